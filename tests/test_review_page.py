"""The review page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
sign in as a reviewer, approve with a key, correct by editing the reply, reject with a reason, label;
then the database holds each decision with who made it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from feedback_support import record, write
from gateway_support import ThreadServer
from treadle.feedback import review
from treadle.feedback.config import FeedbackConfig
from treadle.feedback.roles import Principal
from treadle.feedback.submit import submit_feedback
from treadle.feedback.withdraw import withdraw
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
from treadle.gateway.policies import make_policy
from treadle.store import open_store
from treadle.store.models import ReviewAction, ReviewItem

CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = os.environ.get("TREADLE_REVIEW_SCREENSHOT")  # set to a path to keep a screenshot of the page


@pytest.fixture
def browser():  # noqa: ANN201
    if not Path(CHROMEDRIVER).is_file():
        pytest.fail("chromium-driver is not installed (apt-get install chromium chromium-driver; .ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="treadle-chromium-")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    if Path("/usr/bin/chromium").is_file():
        opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_reviewer_signs_in_and_decides_items(browser, tmp_path: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    db = f"sqlite:///{tmp_path / 'review.db'}"
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"key": "k-rev", "user": "rita", "role": "reviewer"},
                                         {"key": "k-user", "user": "ulla", "role": "user"}]}))
    store = open_store(db)
    write(store, record("p1", request="How do I get a refund?", output="Go to Orders, then Refund."),
          record("p2", request="Cancel my order", output="I cannot help."),
          record("p3", request="Tell me about my bank", output="Here is a joke."))
    for rid, payload in (("p1", {"thumbs": "down", "comment": "too short"}),
                         ("p2", {"thumbs": "down", "correction": "Open Orders and press Cancel."}),
                         ("p3", {"thumbs": "down"})):
        submit_feedback(store, Principal("alice", "user"), {"response_id": rid, **payload})
    with store.session() as s:  # sam's approval of p1, withdrawn: the page shows it, the queue does not count it
        p1 = s.execute(select(ReviewItem).where(ReviewItem.response_id == "p1")).scalar_one()
        review.act(s, p1.id, Principal("sam", "reviewer"), "approve")
        withdraw(s, Principal("root", "admin"), "sam", "careless")
    gw = Gateway(make_policy("round_robin"), GatewaySettings(feedback=FeedbackConfig(db=db, keys_file=str(keys))))
    server = ThreadServer(create_gateway_app(gw))
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(f"{server.base}/review")
        browser.find_element(By.ID, "key").send_keys("k-user", Keys.ENTER)
        assert "needs reviewer" in wait.until(ec.presence_of_element_located((By.ID, "login-error"))).text
        browser.find_element(By.ID, "key").send_keys("k-rev", Keys.ENTER)
        first = wait.until(ec.presence_of_element_located((By.ID, "approve")))
        assert "rita (reviewer)" in browser.find_element(By.TAG_NAME, "header").text
        assert "How do I get a refund?" in browser.find_element(By.ID, "item").text
        assert "sam approve (withdrawn by root: careless)" in browser.find_element(By.ID, "item").text
        wait.until(lambda d: "0 of 3 decided" in d.find_element(By.ID, "progress-text").text)
        if SCREENSHOT:
            browser.save_screenshot(SCREENSHOT)
        browser.find_element(By.TAG_NAME, "body").send_keys("l")  # label with the keyboard
        browser.find_element(By.ID, "label-text").send_keys("refund", Keys.ENTER)
        wait.until(lambda d: "label refund" in d.find_element(By.ID, "item").text)
        browser.find_element(By.TAG_NAME, "body").send_keys("a")  # approve
        wait.until(ec.staleness_of(first))
        wait.until(lambda d: "Cancel my order" in d.find_element(By.ID, "item").text)
        box = browser.find_element(By.ID, "correction-text")
        assert box.get_attribute("value") == "Open Orders and press Cancel."  # the user's correction, prefilled
        browser.find_element(By.ID, "correct").click()
        box.clear()
        box.send_keys("Open Orders, pick the order, press Cancel.")
        box.send_keys(Keys.CONTROL, Keys.ENTER)
        wait.until(lambda d: "Tell me about my bank" in d.find_element(By.ID, "item").text)
        browser.find_element(By.TAG_NAME, "body").send_keys("r")
        browser.find_element(By.ID, "reason-off_topic").click()
        wait.until(ec.presence_of_element_located((By.ID, "done")))
        wait.until(lambda d: "3 of 3 decided" in d.find_element(By.ID, "progress-text").text)
    finally:
        server.stop()
    with store.session() as s:
        items = {i.response_id: i for i in s.execute(select(ReviewItem)).scalars()}
        assert (items["p1"].status, items["p1"].final_label, items["p1"].final_reply) == \
            ("approved", "refund", "Go to Orders, then Refund.")
        assert (items["p2"].status, items["p2"].final_reply) == ("corrected", "Open Orders, pick the order, press Cancel.")
        assert (items["p3"].status, items["p3"].reject_reason) == ("rejected", "off_topic")
        acts = s.execute(select(ReviewAction.reviewer, ReviewAction.action).order_by(ReviewAction.id)).all()
        assert acts == [("sam", "approve"), ("rita", "label"), ("rita", "approve"), ("rita", "correct"), ("rita", "reject")]
    store.close()
