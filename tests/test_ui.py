"""The web page in headless Chromium against the real gateway and model server.

Each test drives Debian's Chromium through Playwright the way a person
would (label, file picker, drop, paste, Enter) and compares what the page
shows with what the API answers for the same image. Screenshots of every
screen at a phone's and a desktop's width go to
``$DEEPCLASSIFY_ARTIFACTS/screenshots``.
"""

import base64
import hashlib
import re

import pytest
import requests
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from tests.conftest import artifacts_dir

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = (360, 1280)
DESKTOP = {"width": 1280, "height": 900}
# Classifying on two shared CPU cores can take a few seconds.
EXPECT_TIMEOUT_MS = 30_000
UNREACHABLE = (
    "The DeepClassify server cannot be reached. Check your connection, then try again."
)

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, gateway_url, file_server):
    """A fresh browser context (empty storage) on the gateway.

    Fails the test when the page throws, or asks for anything but the
    gateway, ``data:`` and ``blob:`` URLs, and the loopback file server
    whose images the link tests preview: no CDN, no external font.
    """
    allowed = (gateway_url + "/", file_server[0] + "/", "data:", "blob:")
    context = browser.new_context(viewport=DESKTOP, base_url=gateway_url)
    page = context.new_page()
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith(allowed)
            else errors.append(f"request outside the gateway: {request.url}")
        ),
    )
    yield page
    context.close()
    assert errors == []


def screenshot(page, name):
    """Writes full-page screenshots at each width; the page must not scroll sideways."""
    folder = artifacts_dir() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow == 0, f"{name} scrolls sideways at {width} px"
        page.screenshot(path=folder / f"{name}-{width}.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def formatted(answer):
    """The API's top five as the page must show them: label and percentage.

    Percentages have 2 decimals, or up to 5 when fewer would show two
    classes of different probabilities as equal (random weights give every
    class about 0.1%).
    """
    values = [p["probability"] * 100 for p in answer["predictions"]]
    for decimals in range(2, 6):
        texts = [f"{value:.{decimals}f}%" for value in values]
        pairs = zip(values, values[1:], texts, texts[1:], strict=False)
        if all(a == b or text_a != text_b for a, b, text_a, text_b in pairs):
            break
    labels = [p["label"] for p in answer["predictions"]]
    return list(zip(labels, texts, strict=True))


def shown(page):
    """The classes and percentages the page shows, once five bars are there."""
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#predictions .prediction")).to_have_count(5)
    labels = page.locator("#predictions .label").all_inner_texts()
    percentages = page.locator("#predictions .pct").all_inner_texts()
    return list(zip(labels, percentages, strict=True))


def api_upload(gateway_url, path, content_type):
    response = requests.post(
        gateway_url + "/api/v1/classify",
        files={"image": (path.name, path.read_bytes(), content_type)},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def api_link(gateway_url, url):
    return requests.post(
        gateway_url + "/api/v1/classify", json={"url": url}, timeout=60
    )


def assert_top_stressed(page):
    expect(page.locator("#predictions .prediction").first).to_have_class(
        "prediction top"
    )
    expect(page.locator("#predictions .prediction.top")).to_have_count(1)


def test_landing_names_the_model_and_warns_of_random_weights(page, gateway_url):
    model = requests.get(gateway_url + "/api/v1/model", timeout=30).json()
    assert model["random_weights"] is True

    page.goto("/")

    expect(page.get_by_role("heading", level=1)).to_have_text("What is in this photo?")
    expect(page.locator("#model-name")).to_have_text(model["name"])
    expect(page.locator("#model-version")).to_have_text(str(model["version"]))
    expect(page.locator("#model-weights")).to_have_text(model["weights"])
    expect(page.locator("#model-notice")).to_be_visible()
    expect(page.locator("#model-notice")).to_contain_text("not meaningful")
    expect(page.get_by_role("link", name="By link").first).to_be_visible()
    expect(page.get_by_role("link", name="By upload").first).to_be_visible()
    screenshot(page, "home")

    page.get_by_role("link", name="By link").first.click()
    expect(page).to_have_url(gateway_url + "/url")
    expect(page.get_by_label("Image address (URL)", exact=True)).to_be_focused()
    screenshot(page, "url-empty")
    page.go_back()
    expect(page.locator("#home-title")).to_be_visible()


def test_keyboard_alone_reaches_the_link_field(page, gateway_url):
    page.goto("/")

    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == "/url":
            break
    page.keyboard.press("Enter")

    expect(page).to_have_url(gateway_url + "/url")
    expect(page.get_by_label("Image address (URL)", exact=True)).to_be_focused()


def test_upload_by_picker_shows_the_api_answer(page, gateway_url, photos):
    path = photos["chelsea.png"]
    answer = api_upload(gateway_url, path, "image/png")

    page.goto("/upload")
    screenshot(page, "upload-empty")
    with page.expect_response("**/api/v1/classify") as response_info:
        page.get_by_label("Photo to classify", exact=True).set_input_files(path)

    assert shown(page) == formatted(answer)
    assert_top_stressed(page)
    sent = response_info.value.json()["image"]
    assert sent["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    expect(page.locator("#stage-image")).to_be_visible()
    model = answer["model"]
    expect(page.locator("#result-model")).to_have_text(
        f"{model['name']}, version {model['version']}, {model['weights']} weights"
    )
    # The round trip as the browser saw it, then the model's part of it.
    expect(page.locator("#result-time")).to_have_text(
        re.compile(r"^\d+ ms \(the model: \d+ ms\)$")
    )
    expect(page.locator("#result-image")).to_have_text("451 × 300 PNG")
    screenshot(page, "upload-result")


def put_file_in_transfer(page, path, content_type):
    """Builds ``window.transfer``: a DataTransfer holding the file, as a drop has."""
    page.evaluate(
        """([data, name, type]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          window.transfer = new DataTransfer();
          window.transfer.items.add(new File([bytes], name, { type }));
        }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name, content_type],
    )


def drop(page):
    """Drags ``window.transfer`` over the landing's heading and drops it there."""
    transfer = page.evaluate_handle("window.transfer")
    page.dispatch_event("#home-title", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop-overlay")).to_be_visible()
    screenshot(page, "drop-overlay")
    page.dispatch_event("#home-title", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop-overlay")).to_be_hidden()


def paste(page):
    """Pastes ``window.transfer`` into the page, as Ctrl+V with a copied image."""
    page.evaluate(
        """() => document.body.dispatchEvent(new ClipboardEvent("paste", {
          clipboardData: window.transfer, bubbles: true, cancelable: true,
        }))"""
    )


@pytest.mark.parametrize("deliver", [drop, paste], ids=["drop", "paste"])
def test_drop_or_paste_anywhere_classifies_the_photo(
    page, gateway_url, photos, deliver
):
    path = photos["chelsea.png"]
    expected = formatted(api_upload(gateway_url, path, "image/png"))
    page.goto("/")
    put_file_in_transfer(page, path, "image/png")

    deliver(page)

    expect(page).to_have_url(gateway_url + "/upload")
    assert shown(page) == expected


def test_link_is_classified_on_enter(page, gateway_url, file_server):
    base, _ = file_server
    url = f"{base}/coffee.png"
    response = api_link(gateway_url, url)
    assert response.status_code == 200, response.text

    page.goto("/url")
    field = page.get_by_label("Image address (URL)", exact=True)
    field.fill(url)
    expect(page.locator("#stage-image")).to_have_attribute("src", url)
    expect(page.locator("#stage-hint")).to_have_text(
        "Press Enter or Classify to name what is in it."
    )
    field.press("Enter")

    assert shown(page) == formatted(response.json())
    assert_top_stressed(page)
    expect(page.locator("#url-error")).to_be_hidden()
    screenshot(page, "url-result")


def test_link_to_text_shows_the_api_error(page, gateway_url, file_server):
    base, _ = file_server
    url = f"{base}/notes.txt"
    response = api_link(gateway_url, url)
    assert response.status_code == 415
    detail = response.json()["detail"]

    page.goto("/url")
    page.get_by_label("Image address (URL)", exact=True).fill(url)
    page.get_by_role("button", name="Classify").click()

    expect(page.locator("#url-error")).to_have_text(detail)
    expect(page.locator("#stage")).to_be_hidden()
    expect(page.get_by_role("button", name="Classify")).to_be_enabled()
    screenshot(page, "url-error")


def test_empty_link_is_explained(page):
    page.goto("/url")
    page.get_by_role("button", name="Classify").click()

    expect(page.locator("#url-error")).to_have_text(
        "Enter the address of an image, starting with https://."
    )


def test_button_is_disabled_while_waiting(page, file_server):
    base, _ = file_server
    held = []
    page.route("**/api/v1/classify", lambda route: held.append(route))
    page.goto("/url")
    page.get_by_label("Image address (URL)", exact=True).fill(f"{base}/rocket.jpg")
    page.get_by_label("Image address (URL)", exact=True).press("Enter")

    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    expect(page.get_by_role("button", name="Classify")).to_be_disabled()
    expect(page.locator("#progress")).to_be_visible()
    screenshot(page, "url-progress")
    held[0].continue_()

    expect(page.locator("#predictions .prediction")).to_have_count(5)
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.get_by_role("button", name="Classify")).to_be_enabled()


def test_server_down_is_said_in_words(page, photos):
    page.goto("/upload")
    page.route("**/api/v1/classify", lambda route: route.abort("connectionrefused"))

    page.get_by_label("Photo to classify", exact=True).set_input_files(
        photos["coffee.png"]
    )

    expect(page.locator("#upload-error")).to_have_text(UNREACHABLE)
    expect(page.locator("#stage")).to_be_hidden()
    expect(page.get_by_label("Photo to classify", exact=True)).to_be_enabled()


@pytest.fixture(scope="module")
def twelve_megapixels(tmp_path_factory, photo_dir):
    """A real photo upscaled to 4000 x 3000, saved as JPEG in two orientations.

    Returns:
        ``{orientation: path}`` for EXIF orientation 1 (as stored) and 6
        (to be turned a quarter clockwise, so it shows as 3000 x 4000).
    """
    folder = tmp_path_factory.mktemp("large")
    with Image.open(photo_dir / "coffee.png") as photo:
        large = photo.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    paths = {}
    for orientation in (1, 6):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / f"coffee-12mp-orientation-{orientation}.jpg"
        large.save(path, "JPEG", quality=95, subsampling=0, exif=exif)
        assert path.stat().st_size > 1_000_000, "the test photo must be over 1 MB"
        paths[orientation] = path
    return paths


@pytest.mark.parametrize(
    ("orientation", "sent_size", "original"),
    [(1, (1024, 768), "4000 × 3000"), (6, (768, 1024), "3000 × 4000")],
)
def test_large_photo_is_scaled_down_before_upload(
    page, twelve_megapixels, orientation, sent_size, original
):
    bodies = []

    def capture(route):
        bodies.append(route.request.post_data_buffer)
        route.continue_()

    page.route("**/api/v1/classify", capture)
    page.goto("/upload")

    with page.expect_response("**/api/v1/classify") as response_info:
        page.get_by_label("Photo to classify", exact=True).set_input_files(
            twelve_megapixels[orientation]
        )

    assert len(bodies) == 1
    assert 10_000 < len(bodies[0]) < 1_000_000
    answer = response_info.value.json()
    assert (answer["image"]["width"], answer["image"]["height"]) == sent_size
    assert answer["image"]["format"] == "JPEG"
    expect(page.locator("#predictions .prediction")).to_have_count(5)
    width, height = sent_size
    expect(page.locator("#result-image")).to_have_text(
        f"{width} × {height} JPEG, scaled down from {original} in this browser"
    )


def test_recent_classifications_are_kept_in_this_browser(page, gateway_url, photos):
    path = photos["chelsea.png"]
    expected = formatted(api_upload(gateway_url, path, "image/png"))
    page.goto("/upload")
    page.get_by_label("Photo to classify", exact=True).set_input_files(path)
    assert shown(page) == expected

    page.reload()

    items = page.locator("#recent-list li")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text(expected[0][0])
    expect(items.first).to_contain_text(expected[0][1])
    thumb = items.first.locator("img")
    expect(thumb).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    assert (
        page.evaluate("document.querySelector('#recent-list img').naturalWidth") == 96
    )
    expect(page.locator("#result")).to_be_hidden()
    screenshot(page, "upload-recent")

    items.first.get_by_role("button").click()
    assert shown(page) == expected

    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#recent")).to_be_hidden()
    page.reload()
    expect(page.locator("#recent")).to_be_hidden()
