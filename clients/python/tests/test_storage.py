"""Storage through the client: values as Python, compare-and-set under contention."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sessiond import AsyncClient, VersionConflict

WORKERS = 4
INCREMENTS = 25


def increment(values):
    values["counter"] = values.get("counter", 0) + 1


def test_values_round_trip_as_python(client):
    token = client.create_session("web_user", user_id="vera").token
    values = {"cart": {"items": ["book", "pen"], "total": 12.5, "paid": False, "note": None},
              "count": 3, "empty": {}, "list": []}
    written = client.put_storage(token, values)
    assert client.get_storage(token) == client.get_storage(token)
    stored = client.get_storage(token)
    assert (stored.values, stored.version) == (values, written.version)
    assert isinstance(stored.values["count"], int)
    assert client.get_storage(token, "count").values == {"count": 3}

    deleted = client.delete_storage(token, "list", expected_version=written.version)
    assert deleted.version == written.version + 1
    cleared = client.clear_storage(token)
    assert client.get_storage(token).values == {} and cleared.version == deleted.version + 1


def test_many_threads_increment_a_counter_without_losing_an_update(client):
    token = client.create_session("web_user", user_id="conny").token
    errors = []

    def work():
        try:
            for _ in range(INCREMENTS):
                client.update_storage(token, increment, "counter", attempts=100)
        except Exception as error:  # reported below, with the test's failure
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = client.get_storage(token)
    assert stored.values == {"counter": WORKERS * INCREMENTS}


async def test_many_tasks_increment_a_counter_without_losing_an_update(server):
    async with AsyncClient(server.address, api_key=server.keys["acme"]) as client:
        token = (await client.create_session("web_user", user_id="tasha")).token

        async def increment_later(values):  # fn may be async too
            await asyncio.sleep(0)
            increment(values)

        async def work():
            for _ in range(INCREMENTS):
                await client.update_storage(token, increment_later, attempts=100)

        await asyncio.gather(*(work() for _ in range(WORKERS)))
        assert (await client.get_storage(token)).values == {"counter": WORKERS * INCREMENTS}


def test_update_storage_gives_up_after_its_attempts_with_the_current_version(client):
    token = client.create_session("web_user", user_id="gus", storage={"n": 0}).token
    calls = []

    def meddling(values):
        calls.append(values["n"])
        client.put_storage(token, {"n": values["n"] + 100})  # another writer, every time
        values["n"] += 1

    with pytest.raises(VersionConflict) as conflict:
        client.update_storage(token, meddling, attempts=3)
    assert len(calls) == 3
    stored = client.get_storage(token)
    assert conflict.value.current_version == stored.version
    assert stored.values == {"n": 300}


def test_update_storage_writes_nothing_when_fn_changes_nothing_and_deletes_what_it_removes(client):
    token = client.create_session("web_user", user_id="hal", storage={"a": 1, "b": 2}).token
    version = client.get_storage(token).version
    assert client.update_storage(token, lambda values: None).version == version
    after = client.update_storage(token, lambda values: {"a": values["a"]})
    assert after.values == {"a": 1} and after.version == version + 1
    assert client.get_storage(token).values == {"a": 1}


def test_a_write_at_a_stale_version_is_a_version_conflict(client):
    token = client.create_session("web_user", user_id="ivy").token
    first = client.put_storage(token, {"a": 1})
    client.put_storage(token, {"a": 2})
    with pytest.raises(VersionConflict) as conflict:
        client.put_storage(token, {"a": 3}, expected_version=first.version)
    assert conflict.value.reason == "VERSION_CONFLICT"
    assert conflict.value.current_version == first.version + 1
