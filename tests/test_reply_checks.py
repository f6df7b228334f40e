"""The model-free coherence rules shared by eval, review scan and canary: short extractive answers, the
request's words in the cut-mid-word check (parameters in evals/reply_checks.py)."""

from __future__ import annotations

from treadle.evals import reply_checks
from treadle.evals.reply_checks import (
    EXTRACTIVE_MAX_WORDS,
    context_text,
    incoherent_reasons,
    is_extractive,
    last_user_text,
)
from treadle.evals.thresholds import ON_TOPIC_MIN

SYSTEM = "You classify requests. The possible intents are:\ncancel_order\nget_invoice\nset_up_shipping_address\n"
REQ = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Request: bill please"}]}
LOW = ON_TOPIC_MIN - 0.2


def test_last_user_text_is_the_last_user_message_or_the_prompt() -> None:
    assert last_user_text(REQ) == "Request: bill please"
    assert last_user_text({"prompt": "p"}) == "p" and last_user_text({"messages": []}) == ""
    assert last_user_text({"messages": [{"role": "user", "content": None}]}) == "" and last_user_text({}) == ""


def test_context_is_every_message_or_the_prompt() -> None:
    assert context_text(REQ) == SYSTEM + "\nRequest: bill please"
    assert context_text({"prompt": "p"}) == "p" and context_text({"messages": []}) == "" and context_text({}) == ""


def test_extractive_is_a_short_phrase_inside_one_line() -> None:
    ctx = context_text(REQ)
    assert is_extractive("get_invoice", ctx) and is_extractive(" Get-Invoice. ", ctx)
    assert is_extractive("set up shipping address", ctx)
    assert not is_extractive("invoice get", ctx)  # order matters
    assert not is_extractive("get_invoice cancel_order", ctx)  # spans two lines
    assert not is_extractive("track_refund", ctx) and not is_extractive("", ctx) and not is_extractive("...", ctx)
    long_line = " ".join(f"w{i}" for i in range(10))
    assert is_extractive(" ".join(f"w{i}" for i in range(EXTRACTIVE_MAX_WORDS)), long_line)
    assert not is_extractive(" ".join(f"w{i}" for i in range(EXTRACTIVE_MAX_WORDS + 1)), long_line)


def test_a_listed_label_is_coherent_whatever_its_cosine() -> None:
    ctx = context_text(REQ)
    assert incoherent_reasons(ctx, "get_invoice", "stop", LOW) == []
    assert incoherent_reasons(ctx, "cancel_order", "stop", LOW) == []  # wrong, but coherent
    # without the list in the context the same reply is judged as before: off topic, and "invoice" is no
    # whole word of the embedding vocabulary, so it also looks cut
    assert incoherent_reasons("Request: bill please", "get_invoice", "stop", LOW) == ["cut_mid_word", "off_topic"]
    assert incoherent_reasons(ctx, "track_order", "stop", LOW) == ["off_topic"]  # not listed, low cosine
    assert incoherent_reasons(ctx, "track_order", "stop", ON_TOPIC_MIN) == []


def test_degenerate_replies_stay_flagged() -> None:
    ctx = context_text(REQ)
    assert incoherent_reasons(ctx, "", "stop", 1.0) == ["empty"]
    assert incoherent_reasons(ctx, "Please open the accou", "stop", 1.0) == ["cut_mid_word"]
    assert incoherent_reasons(ctx, "get_invoice", "abort", 1.0) == ["cut_mid_word"]  # an aborted stream is cut
    assert "repetitive" in incoherent_reasons(ctx, "get_invoice " * 20, "stop", 1.0)


def test_the_request_words_count_as_whole_words() -> None:
    assert reply_checks.degeneracy("You can get your invoice", "stop", "where is my invoice")["cut_mid_word"] is False
    assert reply_checks.degeneracy("You can get your invoi", "stop", "where is my invoice")["cut_mid_word"] is True
