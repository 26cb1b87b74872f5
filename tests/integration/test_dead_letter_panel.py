"""The live page's dead-letter panel and the `GET /dead-letters/` endpoint behind it, in a real headless Chromium.

Five orders are dead-lettered for three reasons, one of them is replayed with
the real CLI, and a worker with DLQ_PAGE_LIMIT=4 must show the four newest,
newest first, with what the DLQ records say about them.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from orders.dead_letters.ledger import REPLAY_OF
from orders.domain import headers as h

from .browser import Browser
from .conftest import ROOT, free_port, produce, produce_orders, read_all, settled, wait_for_topics, wait_until
from .test_dlq_tools import dlq

SCREENSHOT = ROOT / "test-output" / "dead-letter-panel.png"
LIMIT = 4
GOOD = [{"orderId": f"panel-good-{i}", "product": "Lamp", "price": 12.5} for i in range(2)]
FAILING = [{"orderId": f"panel-fail-{i}", "product": "Chair", "price": 40.25} for i in range(1, 4)]
NEGATIVE = {"orderId": "panel-negative", "product": "Broken", "price": -1.0}
JUNK = (b"panel-junk", b"not avro at all")
COLUMNS = ("time", "order", "reason", "attempts", "error", "original", "replayed")


def get(port: int, query: str = "") -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dead-letters/{query}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def panel_rows(browser: Browser) -> list[dict[str, str]]:
    cells = browser.run("return [...document.querySelectorAll('#dlq_table tbody tr')]"
                        ".map(row => [...row.cells].map(cell => cell.textContent));")
    return [dict(zip(COLUMNS, row, strict=True)) for row in cells if len(row) == len(COLUMNS)]


def choose_reason(browser: Browser, reason: str) -> None:
    browser.run("const select = document.getElementById('dlq_reason');"
                "select.value = arguments[0]; select.dispatchEvent(new Event('change'));", reason)


def test_dead_letter_panel_shows_the_newest_dead_letters_with_replay_state_and_filters_by_reason(
        names, start_worker, order_codec, tmp_path):
    failing = ",".join(f"{order['orderId']}:always" for order in FAILING)
    first = start_worker(MAX_RETRIES=1, SIMULATED_FAILURES=failing, DLQ_PAGE_LIMIT=LIMIT)
    wait_for_topics(names.orders, names.dlq)
    produce_orders(order_codec, names.orders, [NEGATIVE])  # the oldest dead letter: beyond the page's limit
    first.wait_for(settled(lambda s: s["dead_letters"] == 1), 60, "the negative price dead-lettered")
    produce_orders(order_codec, names.orders, GOOD + FAILING)
    produce(names.orders, [JUNK])
    first.wait_for(settled(lambda s: s["orders"] == 2 and s["dead_letters"] == 5 and s["in_retry"] == 0), 90,
                   "good orders counted, the rest dead-lettered")
    first.stop()

    # The operator fixes panel-fail-1's cause and replays it with the CLI; a worker without its failure counts it.
    dlq(names, "replay", "--order-id", "panel-fail-1")
    worker = start_worker("fixed-worker", SIMULATED_FAILURES=",".join(failing.split(",")[1:]),
                          DLQ_PAGE_LIMIT=LIMIT)
    worker.wait_for(settled(lambda s: s["orders"] == 3 and s["dead_letters"] == 5), 60, "the replayed order counted")

    # What the DLQ topic holds, read by the test itself: the newest LIMIT by dead-letter time.
    in_dlq = sorted(read_all(names.dlq), key=lambda r: (int(r.headers[h.DEAD_LETTERED_MS]), r.partition, r.offset))
    assert [r.key for r in in_dlq[:1]] == [NEGATIVE["orderId"].encode()]
    newest = in_dlq[::-1][:LIMIT]
    originals = {r.key: r for r in read_all(names.orders) if REPLAY_OF not in r.headers}  # not the replayed copy

    status, answer = get(worker.port)
    assert status == 200, answer
    assert [(d["dlq_partition"], d["dlq_offset"]) for d in answer["dead_letters"]] == \
        [(r.partition, r.offset) for r in newest], "the newest LIMIT, newest first"
    assert answer["limit"] == LIMIT and answer["reasons"] == {h.RETRIES_EXHAUSTED: 3, h.UNDECODABLE: 1}
    for letter, record in zip(answer["dead_letters"], newest, strict=True):
        assert letter["reason"] == record.headers[h.DLQ_REASON].decode()
        assert letter["key"] == record.key.decode()
        assert (letter["original_partition"], letter["original_offset"]) == \
            (originals[record.key].partition, originals[record.key].offset)
        assert (letter["replay"] is not None) == (record.key == b"panel-fail-1"), letter
    assert [d["order_id"] for d in get(worker.port, f"?reason={h.UNDECODABLE}")[1]["dead_letters"]] == [None]
    assert len(get(worker.port, "?limit=2")[1]["dead_letters"]) == 2
    assert get(worker.port, "?limit=lots")[0] == 400
    assert get(worker.port, "?limit=999")[1]["limit"] == LIMIT, "DLQ_PAGE_LIMIT bounds every request"

    browser = Browser(free_port(), tmp_path / "chromedriver.log", window=(1280, 1500))
    try:
        browser.open(f"http://127.0.0.1:{worker.port}/")
        rows = wait_until(lambda: len(found := panel_rows(browser)) == LIMIT and found, 30, "the panel's rows")
        by_order = {row["order"]: row for row in rows}
        assert list(by_order) == [d["order_id"] or f"? key={d['key']}" for d in answer["dead_letters"]]
        assert set(by_order) == {"panel-fail-1", "panel-fail-2", "panel-fail-3", "? key=panel-junk"}
        for order in FAILING:
            row = by_order[order["orderId"]]
            original = originals[order["orderId"].encode()]
            assert row["reason"] == h.RETRIES_EXHAUSTED and row["attempts"] == "2", row
            assert row["original"] == f"{names.orders}/{original.partition}/{original.offset}", row
            assert row["error"], row
            assert row["replayed"].startswith("yes") == (order["orderId"] == "panel-fail-1"), row
        assert by_order["? key=panel-junk"]["reason"] == h.UNDECODABLE
        assert f"of the newest {LIMIT}" in browser.text_of("dlq_note")["dlq_note"]
        print(f"dead-letter panel screenshot: {browser.screenshot(SCREENSHOT)}")

        choose_reason(browser, h.UNDECODABLE)
        wait_until(lambda: [row["order"] for row in panel_rows(browser)] == ["? key=panel-junk"], 15,
                   "only the undecodable dead letter")
        choose_reason(browser, h.RETRIES_EXHAUSTED)
        wait_until(lambda: {row["reason"] for row in panel_rows(browser)} == {h.RETRIES_EXHAUSTED}
                   and len(panel_rows(browser)) == 3, 15, "only the three retries-exhausted dead letters")
    finally:
        browser.close()
