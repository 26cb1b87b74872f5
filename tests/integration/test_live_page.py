"""GET / in a real headless Chromium: the page's own script shows what /average/ says and charts the average."""
import time
import urllib.request

from .browser import Browser
from .conftest import ROOT, drained, free_port, orders_with_prices, produce_orders, wait_until

COUNTS = ("orders", "retries", "dead_letters", "dead_letters_outstanding", "in_retry", "partitions",
          "unreachable_workers")
PRICES = ("total_price", "average")
SCREENSHOT = ROOT / "test-output" / "live-page.png"
MIN_CHART_POINTS = 8


def shown_figures(browser: Browser) -> dict[str, float] | None:
    """The figures as the page shows them, parsed; None while any is still the placeholder."""
    texts = browser.text_of(*COUNTS, *PRICES)
    try:
        return {key: float(text.replace(",", "")) for key, text in texts.items()}
    except ValueError:
        return None


def chart_points(browser: Browser) -> int:
    return browser.run("const line = document.querySelector('#chart polyline');"
                       "return line === null ? 0 : line.points.numberOfItems;")


def test_live_page_renders_the_aggregate_follows_it_and_says_when_the_worker_is_gone(names, start_worker, order_codec,
                                                                                      tmp_path):
    # live-3 fails once and is retried; live-7 fails every attempt and is dead-lettered: no figure stays at 0.
    worker = start_worker(MAX_RETRIES=1, SIMULATED_FAILURES="live-3:1,live-7:always")
    url = f"http://127.0.0.1:{worker.port}/"
    with urllib.request.urlopen(url, timeout=5) as response:
        served = response.read().decode()
    assert 'id="orders">–<' in served and 'id="average">–<' in served, "figures must come from the page's script"

    orders = orders_with_prices("live", 60)
    produce_orders(order_codec, names.orders, orders[:20])
    browser = Browser(free_port(), tmp_path / "chromedriver.log", window=(1280, 1300))
    try:
        browser.open(url)
        first = wait_until(lambda: shown_figures(browser), 20, "the page's first figures")
        for start in range(20, 60, 10):  # the rest arrive while the page is open
            produce_orders(order_codec, names.orders, orders[start:start + 10])
            time.sleep(1)

        final = worker.wait_for(drained(60), 90, "every order counted or dead-lettered")
        assert final["orders"] == 59 and final["dead_letters"] == 1 and final["retries"] >= 2, final
        shown = wait_until(lambda: (figures := shown_figures(browser)) and figures["orders"] == final["orders"]
                           and figures, 20, "the page to catch up without a reload")
        after = worker.summary()
        assert after == final, "the aggregate changed after draining"
        for key in COUNTS:
            expected = len(final[key]) if key == "unreachable_workers" else final[key]
            assert shown[key] == expected, f"{key}: page shows {shown[key]}, /average/ says {expected}"
        for key in PRICES:
            assert abs(shown[key] - final[key]) <= 0.005 + 1e-9, f"{key}: page {shown[key]}, /average/ {final[key]}"
        assert first["orders"] < final["orders"], "the page never refreshed by itself"

        wait_until(lambda: chart_points(browser) >= MIN_CHART_POINTS, 30, f"{MIN_CHART_POINTS} points on the chart")
        assert browser.text_of("status")["status"].startswith("live")
        print(f"live page screenshot: {browser.screenshot(SCREENSHOT)}")

        worker.stop()
        wait_until(lambda: browser.text_of("status")["status"].startswith("cannot reach the worker"), 15,
                   "the page to say the worker is gone")
        assert shown_figures(browser) == shown, "the last figures stay on the page"
    finally:
        browser.close()
