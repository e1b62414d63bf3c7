"""events.jsonl: strictly increasing seq, readable while written, torn lines."""

from __future__ import annotations

import json
import threading
import time

import pytest

from trainers.events import (
    EventCursor,
    EventType,
    EventWriter,
    RunStatus,
    SchemaError,
    follow_events,
    read_events,
    read_new_events,
    validate_event,
)


def test_seq_strictly_increases_and_continues_after_reopen(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.write(EventType.STATUS, status="starting")
        w.write(EventType.STATUS, status="running")
    with EventWriter(path) as w:  # a resumed run opens the same file
        assert w.last_seq == 2
        w.write(EventType.STATUS, status="resumed", from_epoch=1)
    seqs = [e["seq"] for e in read_events(path)]
    assert seqs == [1, 2, 3]


def test_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.write(EventType.STATUS, status="starting")
    with open(path, "a") as fh:
        fh.write('{"seq": 2, "type": "st')  # killed mid-write
    with EventWriter(path) as w:
        w.write(EventType.STATUS, status="running")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]


def test_reader_never_returns_a_partial_line_and_never_repeats(tmp_path):
    path = tmp_path / "events.jsonl"
    cursor = EventCursor()
    path.write_text('{"seq":1,"type":"status","time":0,"status":"starting"}\n{"seq":2,"ty')
    first = read_new_events(path, cursor)
    assert [e["seq"] for e in first] == [1]
    with open(path, "a") as fh:
        fh.write('pe":"status","time":0,"status":"running"}\n')
    second = read_new_events(path, cursor)
    assert [e["seq"] for e in second] == [2]
    assert read_new_events(path, cursor) == []


def test_follow_ends_after_terminal_status(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)

    def produce():
        for i in range(3):
            writer.write(
                EventType.STEP,
                epoch=1,
                step=i,
                global_step=i,
                loss=1.0,
                lr=0.1,
                data_s=0.0,
                compute_s=0.0,
            )
            time.sleep(0.02)
        writer.write(EventType.STATUS, status=RunStatus.COMPLETED)

    t = threading.Thread(target=produce)
    t.start()
    got = list(follow_events(path, poll_s=0.01))
    t.join()
    writer.close()
    assert [e["type"] for e in got] == ["step", "step", "step", "status"]
    assert RunStatus(got[-1]["status"]).is_terminal()
    assert not RunStatus.RUNNING.is_terminal()


def test_schema_validation_names_the_problem():
    with pytest.raises(SchemaError, match="unknown type 'bogus'"):
        validate_event({"seq": 1, "type": "bogus", "time": 0})
    with pytest.raises(SchemaError, match="line 7: step event lacks"):
        validate_event({"seq": 1, "type": "step", "time": 0, "epoch": 1}, line_no=7)
