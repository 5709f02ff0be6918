"""The browser demo page, in a real headless Chromium whose fake microphone plays a recording.

Chromium and ChromeDriver come from Debian (`chromium`, `chromium-driver`), installed by
scripts/setup.sh; the screenshot of the transcribed page is kept in test-artifacts/.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from stt_server.audio import SAMPLE_RATE
from tests.stt_server.speech import Recording, make_recording, word_error_rate

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def spoken() -> Recording:
    return make_recording(
        (
            "Please call Stella and ask her to bring these things from the store.",
            "The weather today is sunny with a light breeze from the west.",
        ),
        (2.0, 2.5),
        lead=1.5,  # the page opens its socket after the fake microphone has started
    )


@pytest.fixture
def browser_for(tmp_path: Path) -> Iterator[type[object]]:
    """Starts Chromium with a fake microphone playing a given recording once."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(binary), (
            f"{binary} is missing: run scripts/setup.sh as root (apt-get install chromium "
            "chromium-driver)"
        )
    drivers: list[webdriver.Chrome] = []

    class Browser:
        @staticmethod
        def open(audio: np.ndarray) -> webdriver.Chrome:
            wav = tmp_path / f"mic-{len(drivers)}.wav"
            soundfile.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            for flag in (
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / f'profile-{len(drivers)}'}",
                "--window-size=900,600",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}%noloop",
            ):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
            drivers.append(driver)
            return driver

    yield Browser
    for driver in drivers:
        driver.quit()


def texts(driver: webdriver.Chrome, selector: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_page_and_assets_are_served(whisper_server: str) -> None:
    page = httpx.get(f"http://{whisper_server}/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert '<button id="toggle"' in page.text
    sources = [page.text]
    for asset in ("app.js", "pcm-worklet.js", "style.css"):
        response = httpx.get(f"http://{whisper_server}/static/{asset}")
        assert response.status_code == 200, asset
        sources.append(response.text)
    # Everything comes from the server itself: no CDN, no external script or font.
    for source in sources:
        assert "http://" not in source
        assert "https://" not in source


def test_microphone_speech_appears_on_the_page(
    whisper_server: str, spoken: Recording, browser_for: type
) -> None:
    driver = browser_for.open(spoken.audio)
    driver.get(f"http://{whisper_server}/")
    driver.find_element(By.ID, "toggle").click()

    def both_turns_final() -> bool:
        return len(texts(driver, "#transcript li.final")) >= len(spoken.turns)

    assert wait_for(both_turns_final, timeout=90), texts(driver, "#transcript li")
    finals = texts(driver, "#transcript li.final")
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "demo-page.png"))

    assert driver.find_element(By.ID, "state").text.startswith("listening")
    assert driver.find_element(By.ID, "toggle").text == "Stop"
    assert not driver.find_element(By.ID, "error").is_displayed()
    # The page's own record of what it rendered: a tentative line came before each final,
    # however quickly the final replaced it.
    rendered = driver.execute_script("return window.sttRendered")
    kinds = [entry["kind"] for entry in rendered]
    assert kinds.count("final") == len(spoken.turns)
    first_final = kinds.index("final")
    assert "tentative" in kinds[:first_final], rendered
    assert "tentative" in kinds[first_final + 1 :], rendered
    assert len(finals) == len(spoken.turns)
    # Same bound as the stt-client tests (whisper-base on espeak-ng speech).
    assert word_error_rate(" ".join(spoken.turns), " ".join(finals)) <= 0.25, finals

    driver.find_element(By.ID, "toggle").click()
    assert wait_for(lambda: driver.find_element(By.ID, "state").text == "idle", timeout=10)
    assert driver.find_element(By.ID, "toggle").text == "Start"


def test_server_errors_are_shown(whisper_server: str, browser_for: type) -> None:
    driver = browser_for.open(np.zeros(SAMPLE_RATE, np.float32))
    # The page passes its own query string on to the WebSocket: a bad setting is refused.
    driver.get(f"http://{whisper_server}/?largeGap=-1")
    driver.find_element(By.ID, "toggle").click()
    error = driver.find_element(By.ID, "error")
    assert wait_for(error.is_displayed, timeout=20)
    assert "INVALID_CONFIG" in error.text
    assert wait_for(lambda: driver.find_element(By.ID, "toggle").text == "Start", timeout=10)
