"""The LLM client against a scripted OpenAI-compatible server on loopback, and the prompts."""
import json

import pytest
from fake_openai import MODEL, FakeOpenAI, closed_port_url, fast_client, requests

from knowfree.errors import ConfigError, InputError
from knowfree.knowledge.cache import ResponseCache
from knowfree.knowledge.llm import Failure, LLMClient, PreflightError, Response, Sampling, redact_url
from knowfree.knowledge.prompts import KINDS, LANGS, load_template

# -- retries and failures ------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_transient_statuses_then_succeeds(status):
    with FakeOpenAI(script=[status, status]) as server:
        client = fast_client(server)
        [r] = client.complete_many(requests(1))
    assert isinstance(r, Response) and r.text == "answer to sentence 0"
    assert len(server.prompts) == 3
    assert client.usage.retries == 2 and client.usage.http_requests == 3 and client.usage.failures == 0


def test_retries_a_timeout():
    with FakeOpenAI(script=["hang"], hang=3.0) as server:
        client = fast_client(server, timeout=0.5)
        [r] = client.complete_many(requests(1))
    assert r.ok and client.usage.retries == 1


def test_gives_up_after_retries_and_keeps_going(tmp_path):
    with FakeOpenAI(script=[500, 500, 500]) as server:
        cache = ResponseCache(tmp_path)
        client = fast_client(server, max_retries=2, concurrency=1, cache=cache)
        results = client.complete_many(requests(3))
        failed = [r for r in results if not r.ok]
        assert len(failed) == 1 and isinstance(failed[0], Failure)
        assert failed[0].status == 500 and failed[0].attempts == 3
        assert client.usage.failures == 1 and client.usage.answered == 2
        # The failure is not cached: running again asks for it and only for it.
        asked = len(server.prompts)
        again = fast_client(server, cache=cache).complete_many(requests(3))
        assert all(r.ok for r in again) and len(server.prompts) == asked + 1


@pytest.mark.parametrize("step,status", [(400, 400), (422, 422), ("garbage", None)])
def test_permanent_errors_fail_at_once_without_crashing(step, status):
    with FakeOpenAI(script=[step]) as server:
        client = fast_client(server, concurrency=1)  # the scripted step meets the first request
        first, second = client.complete_many(requests(2))
    assert not first.ok and first.attempts == 1 and first.status == status
    assert second.ok and client.usage.retries == 0


def test_concurrency_is_bounded_and_duplicates_are_asked_once():
    with FakeOpenAI(delay=0.2) as server:
        client = fast_client(server, concurrency=3)
        reqs = requests(9) + requests(3)  # the last three repeat the first three
        results = client.complete_many(reqs)
    assert server.max_in_flight <= 3 and len(server.prompts) == 9
    assert [r.text for r in results[9:]] == [r.text for r in results[:3]]


def test_several_servers_share_the_work_and_each_answer_names_its_server(tmp_path):
    with FakeOpenAI(delay=0.05) as a, FakeOpenAI(delay=0.05) as b:
        cache = ResponseCache(tmp_path)
        client = LLMClient(MODEL, [a.base_url, b.base_url], cache=cache, concurrency=2)
        assert client.preflight() == [MODEL]
        reqs = requests(12)
        results = client.complete_many(reqs)
        cache.close()
    # every request asked exactly once, and each server got its share
    assert sorted(a.prompts + b.prompts) == sorted(r.messages[-1]["content"] for r in reqs)
    assert a.prompts and b.prompts
    assert [r.text for r in results] == [f"answer to {r.messages[-1]['content']}" for r in reqs]
    assert cache.provenance()["servers"] == {a.base_url: len(a.prompts), b.base_url: len(b.prompts)}
    assert client.describe()["base_url"] == [a.base_url, b.base_url]


def test_preflight_checks_every_server():
    with FakeOpenAI() as up:
        client = LLMClient(MODEL, [up.base_url, closed_port_url()], max_retries=0)
        with pytest.raises(PreflightError) as e:
            client.preflight()
    assert e.value.reason == "unreachable"


def test_sampling_reaches_the_server_and_seed_only_when_set():
    with FakeOpenAI() as server:
        fast_client(server).complete_many(requests(1, sampling=Sampling(0.7, 33, 0.9, seed=5)) + requests(1))
    with_seed, without = sorted(server.bodies, key=lambda b: "seed" not in b)
    assert (with_seed["temperature"], with_seed["max_tokens"], with_seed["top_p"], with_seed["seed"]) == (0.7, 33, 0.9, 5)
    assert "seed" not in without


def test_usage_counts_tokens_and_cache_hits(tmp_path):
    with FakeOpenAI() as server:
        cache = ResponseCache(tmp_path)
        client = fast_client(server, cache=cache)
        client.complete_many(requests(2))
        client.complete_many(requests(2))
    u = client.usage.to_dict()
    assert (u["answered"], u["cache_hits"], u["prompt_tokens"], u["completion_tokens"]) == (2, 2, 14, 6)


# -- preflight -----------------------------------------------------------------------------

def test_preflight_passes_and_lists_models():
    with FakeOpenAI(models=["other", MODEL]) as server:
        assert fast_client(server).preflight() == ["other", MODEL]


def test_preflight_server_down():
    client = LLMClient(MODEL, closed_port_url())
    with pytest.raises(PreflightError) as e:
        client.preflight(timeout=2)
    assert e.value.reason == "unreachable"
    assert client.base_url in str(e.value) and "llm serve" in str(e.value)


def test_preflight_wrong_key(monkeypatch):
    monkeypatch.setenv("KF_TEST_KEY", "wrong")
    with FakeOpenAI(key="right") as server:
        with pytest.raises(PreflightError) as e:
            fast_client(server, api_key_env="KF_TEST_KEY").preflight()
        assert e.value.reason == "auth" and "401" in str(e.value) and "KF_TEST_KEY" in str(e.value)
        monkeypatch.setenv("KF_TEST_KEY", "right")
        assert fast_client(server, api_key_env="KF_TEST_KEY").preflight() == [MODEL]
        assert len(server.prompts) == 0  # preflight does no completion work


def test_preflight_unknown_model_lists_the_served_ones():
    with FakeOpenAI(models=["qwen-a", "qwen-b"]) as server:
        with pytest.raises(PreflightError) as e:
            fast_client(server).preflight()
    assert e.value.reason == "model" and "fake-model" in str(e.value) and "qwen-a, qwen-b" in str(e.value)


def test_preflight_without_models_endpoint_uses_one_token():
    with FakeOpenAI(list_models=False) as server:
        assert fast_client(server).preflight() == [MODEL]
        assert server.bodies[-1]["max_tokens"] == 1
    with FakeOpenAI(models=["other"], list_models=False) as server:
        with pytest.raises(PreflightError) as e:
            fast_client(server).preflight()
        assert e.value.reason == "model"


def test_remote_server_needs_the_key_variable(monkeypatch):
    monkeypatch.delenv("KF_UNSET_KEY", raising=False)
    client = LLMClient(MODEL, "https://llm.example.org/v1", api_key_env="KF_UNSET_KEY")
    with pytest.raises(ConfigError, match="KF_UNSET_KEY"):
        client.preflight()


def test_no_base_url_needs_a_replay_cache(tmp_path):
    with pytest.raises(ConfigError, match="base_url"):
        LLMClient(MODEL, None)
    assert LLMClient(MODEL, None, cache=ResponseCache(tmp_path, "replay")).preflight() == []


# -- prompts -------------------------------------------------------------------------------

FIELDS = {"entity": {}, "pos": {}, "describe": {},
          "explain": {"entities": [("北京", "地名"), {"entity": "Anna", "type": "person"}]}}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_template_renders(kind, lang):
    t = load_template(kind, lang)
    assert t.version.startswith(f"{kind}.{lang}.") and t.kind == kind and t.text
    messages = t.render(sentence="<<S>>", **FIELDS[kind])
    roles = ["system"] + ["user", "assistant"] * len(t.examples) + ["user"]
    assert [m["role"] for m in messages] == roles
    assert "<<S>>" in messages[-1]["content"] and all("${" not in m["content"] for m in messages)
    if kind == "explain":
        assert "北京" in messages[-1]["content"] and "person" in messages[-1]["content"]
    if kind in ("entity", "pos"):  # a worked example whose answer is valid JSON and real substrings
        assert t.examples
        for example in t.examples:
            items = json.loads(example["answer"])
            assert items and all(item[{"entity": "entity", "pos": "word"}[kind]] in example["sentence"] for item in items)
        if kind == "pos":  # segmentation examples cover every character
            joined = "".join(item["word"] for item in json.loads(t.examples[0]["answer"]))
            assert joined == t.examples[0]["sentence"].replace(" ", "")


def test_template_fields_are_checked():
    t = load_template("explain", "en")
    with pytest.raises(InputError, match="missing \\['entities'\\]"):
        t.render(sentence="x")
    with pytest.raises(InputError, match="unexpected \\['sentense'\\]"):
        load_template("entity", "en").render(sentence="x", sentense="y")


def test_overrides_from_params_text_file_and_folder(tmp_path):
    plain = load_template("entity", "zh", {"entity": "找实体：${sentence}"})
    assert plain.version.startswith("entity.zh.custom-") and plain.render(sentence="甲") == [
        {"role": "user", "content": "找实体：甲"}]
    yaml_text = "version: entity.zh.mine\nsystem: be brief\nuser: 'S=${sentence}'\n"
    (tmp_path / "e.yaml").write_text(yaml_text, encoding="utf-8")
    from_file = load_template("entity", "zh", {"entity.zh": str(tmp_path / "e.yaml"), "entity": "unused ${sentence}"})
    assert from_file.version == "entity.zh.mine" and from_file.render(sentence="1")[1]["content"] == "S=1"
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "ja.yaml").write_text(yaml_text.replace("entity", "pos"), encoding="utf-8")
    assert load_template("pos", "ja", tmp_path).version == "pos.zh.mine"
    assert load_template("pos", "ko", tmp_path).source.endswith("prompts/pos/ko.yaml")  # shipped one


def test_bad_templates_are_refused_with_where_and_fix():
    with pytest.raises(InputError, match="params\\['entity'\\].*sentence"):
        load_template("entity", "zh", {"entity": "no placeholder here"})
    with pytest.raises(InputError, match="unknown prompt kind"):
        load_template("summary", "zh")
    with pytest.raises(InputError, match="language 'fr'"):
        load_template("entity", "fr")


def test_urls_are_written_without_credentials():
    assert redact_url("http://u:p@h:1/v1?api_key=k&x=1&token=t") == "http://***@h:1/v1?api_key=***&x=1&token=***"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    client = LLMClient(MODEL, ["https://bob:pw@a/v1", "https://b/v1?key=z"], cache=None)
    assert client.describe()["base_url"] == ["https://***@a/v1", "https://b/v1?key=***"]
    assert client.server_label == "https://***@a/v1, https://b/v1?key=***"
