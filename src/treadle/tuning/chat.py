"""Training examples rendered with the chat template the engine serves with (``treadle.models.tokenizer``).

SFT: the whole conversation is rendered once and tokenized once (the same ids the engine's
``encode_chat`` gives); a token is trained on (label = its id) when its characters lie inside an assistant
turn: the reply text and the end-of-turn token, not the newline the template writes after it. Every other
label is -100. A record whose last reply is not ``complete`` (cut at a token limit when it was served) is
rendered only up to the end of that reply's text: no end-of-turn token is trained after a cut answer.
Preference/KTO: the prompt is rendered with the generation prompt, the reply is the text the
template adds for the assistant turn, cut after its end-of-turn token; TRL tokenizes ``prompt + reply``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from treadle.models.tokenizer import Tokenizer
from treadle.tuning.data import DatasetError, Messages

IGNORE = -100


class ChatRenderer:
    """Renders records with the model folder's own template and tokenizer.json."""

    def __init__(self, model_dir: str | Path) -> None:
        self.tok = Tokenizer(model_dir)
        self._fast = HFTokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        if self.tok.chat_template is None:
            raise ValueError(f"model {model_dir} has no chat template; chat datasets need one")
        self.eos = self.tok.eos_token or ""

    def render(self, messages: Messages, add_generation_prompt: bool) -> str:
        return self.tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)

    def _turn_end(self, text: str, start: int, end: int) -> int:
        """End of an assistant turn: just after its last end-of-turn token (trailing newline left out)."""
        cut = text.rfind(self.eos, start, end) if self.eos else -1
        return cut + len(self.eos) if cut >= 0 else end

    def assistant_spans(self, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
        """The full text and the character span of each assistant turn in it."""
        full = self.render(messages, add_generation_prompt=False)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            head = self.render(messages[:i], add_generation_prompt=True)
            upto = self.render(messages[: i + 1], add_generation_prompt=False)
            if not full.startswith(upto) or not upto.startswith(head):
                raise DatasetError(f"the chat template does not render messages[{i}] as a prefix of the conversation")
            spans.append((len(head), self._turn_end(upto, len(head), len(upto))))
        return full, spans

    def sft_example(self, messages: Messages, complete: bool = True) -> dict[str, list[int]]:
        """``{"input_ids", "labels"}``: the engine's tokens; labels -100 outside assistant turns.

        ``complete=False``: the text stops where the last reply's content ends (no end-of-turn token after it).
        """
        full, spans = self.assistant_spans(messages)
        if not complete:
            end = spans[-1][1]
            if not self.eos or not full.startswith(self.eos, end - len(self.eos)):
                raise DatasetError("complete=false needs a chat template that ends each assistant turn with the "
                                   "end-of-turn token")
            end -= len(self.eos)
            full, spans = full[:end], [*spans[:-1], (spans[-1][0], end)]
        enc = self._fast.encode(full, add_special_tokens=False)
        labels = []
        for tid, (a, b) in zip(enc.ids, enc.offsets, strict=True):
            inside = any(s <= a and b <= e for s, e in spans)
            labels.append(tid if inside else IGNORE)
        return {"input_ids": list(enc.ids), "labels": labels}

    def prompt_and_reply(self, prompt: Messages, reply: str) -> tuple[str, str]:
        """Prompt text (with the generation prompt) and the assistant turn's text that follows it."""
        head = self.render(prompt, add_generation_prompt=True)
        full = self.render([*prompt, {"role": "assistant", "content": reply}], add_generation_prompt=False)
        if not full.startswith(head):
            raise DatasetError("the chat template does not render the prompt as a prefix of prompt + reply")
        return head, full[len(head): self._turn_end(full, len(head), len(full))]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)
