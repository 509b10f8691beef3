#!/usr/bin/python3
"""Checks a report.html of `repmode batch` as a browser shows it: Debian's headless Chromium, driven through
Selenium (python3-selenium, chromium, chromium-driver), loads the page from its file and says whether every picture
decoded (an <img> that is complete with a natural width) and how many rows the table #volumes has. A picture that is
not a PNG loads as a broken image, of natural width 0, so the check fails on it.

As a module: check(report, rows[, screenshot]) and available() for a test to skip on. As a script:
    check_report.py REPORT.html ROWS [SCREENSHOT.png]
exits 0 or 1 with a one-line message."""
import os
import shutil
import sys

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WIDTH, HEIGHT, MAX_HEIGHT = 1280, 1600, 4000  # the window; a screenshot is as tall as the page, up to MAX_HEIGHT
LOAD_SECONDS = 60

# Every <img>: its position among them, its alt text, whether it decoded.
IMAGES_JS = """return Array.from(document.images, (img, i) => ({
    index: i, alt: img.alt, src: img.src.slice(0, 40), ok: img.complete && img.naturalWidth > 0}));"""
ROWS_JS = "return document.querySelectorAll('#volumes tbody tr').length;"
# The page's height, and how much taller the window is than its viewport (the headless browser's frame).
HEIGHT_JS = """return [Math.ceil(document.documentElement.getBoundingClientRect().height),
    window.outerHeight - window.innerHeight];"""


def missing():
    """Why the check cannot run here ("" when it can): the browser, its driver or Selenium is not installed."""
    reasons = []
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)) and not shutil.which(path):
            reasons.append(f"{path} is missing (Debian's {package})")
    try:
        import selenium.webdriver  # noqa: F401
    except ImportError:
        reasons.append(f"{sys.executable} cannot import selenium (Debian's python3-selenium, for /usr/bin/python3)")
    return "; ".join(reasons)


def available():
    """Whether chromium, chromedriver and selenium are all here: for pytest.mark.skipif(not available(), ...),
    with missing() as the reason."""
    return not missing()


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(LOAD_SECONDS)
    return driver


def check(report_path, expected_rows, screenshot=None):
    """Opens report_path in headless Chromium and checks that every <img> decoded and that the table #volumes has
    expected_rows rows in its <tbody>; AssertionError says which image or how many rows otherwise. Saves a
    screenshot of the page (as tall as the page, up to MAX_HEIGHT pixels) to `screenshot` when given, before the
    checks, so a failing page can be looked at. Returns {"images": n, "rows": n}."""
    from selenium.webdriver.support.ui import WebDriverWait

    path = os.path.abspath(report_path)
    if not os.path.isfile(path):
        raise AssertionError(f"{report_path}: no such file")
    driver = _driver()
    try:
        driver.get("file://" + path)
        WebDriverWait(driver, LOAD_SECONDS).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        images = driver.execute_script(IMAGES_JS)
        rows = driver.execute_script(ROWS_JS)
        if screenshot:
            height, frame = driver.execute_script(HEIGHT_JS)
            driver.set_window_size(WIDTH, min(max(int(height), 200), MAX_HEIGHT) + max(int(frame), 0))
            if not driver.save_screenshot(os.path.abspath(screenshot)):
                raise AssertionError(f"{report_path}: cannot save the screenshot {screenshot}")
    finally:
        driver.quit()

    broken = [i for i in images if not i["ok"]]
    if broken:
        first = broken[0]
        raise AssertionError(f"{report_path}: {len(broken)} of {len(images)} pictures did not load, the first "
                             f"<img> {first['index'] + 1} (alt \"{first['alt']}\", src \"{first['src']}...\")")
    if rows != expected_rows:
        raise AssertionError(f"{report_path}: the table #volumes has {rows} rows, {expected_rows} expected")
    return {"images": len(images), "rows": rows}


def main(argv):
    if len(argv) not in (3, 4) or not argv[2].isdigit():
        print(f"usage: {os.path.basename(argv[0])} REPORT.html ROWS [SCREENSHOT.png]", file=sys.stderr)
        return 1
    why = missing()
    if why:
        print(f"cannot check {argv[1]}: {why}", file=sys.stderr)
        return 1
    try:
        found = check(argv[1], int(argv[2]), argv[3] if len(argv) == 4 else None)
    except AssertionError as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    print(f"OK {argv[1]}: {found['rows']} rows, {found['images']} pictures loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
