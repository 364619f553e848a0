"""A real browser for the dashboard's tests: Debian's `chromium`, headless, driven through
`chromium-driver` by Selenium (`scripts/test` installs both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 120  # the machine may be loaded; every wait ends as soon as its condition holds


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[WebDriver]:
    """A headless chromium, 1280 x 860, closed after the test."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,860", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """What `condition(driver)` gives once it is true (an element missing or replaced
    meanwhile counts as not yet)."""
    def check(d: WebDriver) -> Any:
        try:
            return condition(d)
        except WebDriverException:  # an element not there yet, or replaced meanwhile
            return False
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(check, message=what)
    except TimeoutException:
        raise AssertionError(f"not within {WAIT} s: {what}\non {driver.current_url}:\n"
                             f"{driver.find_element(By.TAG_NAME, 'body').text}") from None


def text(driver: WebDriver, css: str) -> str:
    """The visible text of the element `css` selects."""
    return driver.find_element(By.CSS_SELECTOR, css).text
