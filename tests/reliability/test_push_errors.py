"""push_folder_to_hub: a bad repository id, no login, no permission and no network are ZooErrors saying what to do."""

from __future__ import annotations

import pytest

import zoo
from zoo.errors import ZooError


class _Response:
    """What HfHubHTTPError reads from an HTTP response."""

    def __init__(self, status_code: int):
        self.status_code, self.headers, self.url, self.text = status_code, {}, "https://huggingface.co/api", ""
        self.request = None

    def json(self):
        return {}


@pytest.fixture
def saved(toy_family, tmp_path):
    return zoo.save_pretrained(zoo.create("toynet-small"), tmp_path / "saved")


def _hub_raising(monkeypatch, exc: Exception) -> None:
    import huggingface_hub

    class FailingApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, *args, **kwargs):
            raise exc

    monkeypatch.setattr(huggingface_hub, "HfApi", FailingApi)


def test_a_bad_repo_id_is_refused_before_contacting_the_hub(saved, monkeypatch):
    _hub_raising(monkeypatch, AssertionError("the Hub was contacted"))
    with pytest.raises(ZooError, match=r"'a/b/c' is not a Hugging Face repository id \(expected ORG/NAME\)"):
        _push(saved, "a/b/c")


def _push(folder, repo_id):
    from zoo.hub.pretrained import push_folder_to_hub

    return push_folder_to_hub(folder, repo_id)


@pytest.mark.parametrize("status, advice", [
    (401, "not logged in: run `hf auth login`, set HF_TOKEN, or pass token="),
    (403, "this token may not write to that repository"),
    (500, "the Hub answered HTTP 500; try again later"),
])
def test_hub_refusals_say_what_to_do(saved, monkeypatch, status, advice):
    from huggingface_hub.errors import HfHubHTTPError

    error = HfHubHTTPError(f"{status} Client Error", response=_Response(status))
    _hub_raising(monkeypatch, error)
    with pytest.raises(ZooError, match="could not push .* to hf-hub:me/toy: ") as caught:
        _push(saved, "me/toy")
    assert advice in str(caught.value)


def test_no_network_says_so(saved, monkeypatch):
    _hub_raising(monkeypatch, ConnectionError("Failed to resolve 'huggingface.co'"))
    with pytest.raises(ZooError, match=r"the Hub could not be reached .*ConnectionError: Failed to resolve"):
        _push(saved, "me/toy")
