"""How the bench matches the hub's mirrored states to the reports that caused them: every
change counts, also while the hub is behind, so a backlog shows in the latency figures of
fast-moving readings as well as slow ones."""

from __future__ import annotations

from hub.bench import PublishedChanges

POWER = ("plug", "power")
BUTTON = ("wall_switch", "action")


def _plug_at(watts: float) -> PublishedChanges:
    changes = PublishedChanges()
    changes.record([(POWER, watts, watts)], 0.0)  # the first report: the value, not a change
    return changes


def test_a_state_the_hub_stamped_while_behind_is_matched_to_its_own_report() -> None:
    changes = _plug_at(99)
    # The plug reports 100, 101, 102, 103 at t = 1, 2, 3, 4; the hub, 2.5 s behind, stamps
    # 101 at 4.5, when the plug has long reported 103.
    for second, watts in enumerate((100, 101, 102, 103), start=1):
        changes.record([(POWER, watts, watts)], float(second))
    assert changes.match(POWER, 101.0, 4.5) == 2.0
    # The hub catches up: 103 is matched to its own report too; 100 and 102 never showed.
    assert changes.match(POWER, 103.0, 4.6) == 4.0
    assert changes.match(POWER, 102.0, 4.7) is None


def test_the_first_report_and_repeats_are_no_changes() -> None:
    changes = PublishedChanges()
    changes.record([(POWER, 100, 100)], 1.0)  # the bench does not know what the hub held before
    assert changes.match(POWER, 100.0, 1.2) is None
    # The hub stamps a value when it changes; a report repeating it moves nothing.
    changes.record([(POWER, 150, 150)], 2.0)
    changes.record([(POWER, 150, 150)], 3.0)
    changes.record([(POWER, 150, 150)], 4.0)
    assert changes.match(POWER, 150.0, 4.5) == 2.0


def test_each_change_is_matched_once_and_never_to_a_later_report() -> None:
    changes = _plug_at(0)
    changes.record([(POWER, 100, 100)], 1.0)
    assert changes.match(POWER, 100.0, 0.5) is None  # stamped before the report was sent
    assert changes.match(POWER, 100.0, 1.5) == 1.0
    assert changes.match(POWER, 100.0, 1.6) is None  # say an attribute moved: not a report
    changes.record([(POWER, 100, 100)], 1.7)  # a repeat of the matched value: still no change
    assert changes.match(POWER, 100.0, 1.8) is None
    # A value the plug returns to is a change of its own.
    changes.record([(POWER, 200, 200)], 2.0)
    changes.record([(POWER, 100, 100)], 3.0)
    assert changes.match(POWER, 100.0, 3.1) == 3.0


def test_the_same_press_twice_is_two_presses() -> None:
    changes = PublishedChanges(events={BUTTON})
    changes.record([(BUTTON, "single", "single")], 0.0)
    changes.record([(BUTTON, "single", "single")], 1.0)
    changes.record([(BUTTON, "single", "single")], 2.0)
    assert changes.match(BUTTON, "single", 2.1) == 2.0
    # Not an event entity: the same value again is a repeat.
    changes = _plug_at(5)
    changes.record([(POWER, 6, 6)], 1.0)
    changes.record([(POWER, 6, 6)], 2.0)
    assert changes.match(POWER, 6.0, 2.1) == 1.0


def test_a_reply_to_a_command_is_not_a_report() -> None:
    changes = _plug_at(0)
    changes.record([(POWER, 100, 100)], 1.0)
    changes.known(POWER, 100)  # the device answered a command: its change is the command's
    assert changes.match(POWER, 100.0, 1.5) is None
    changes.record([(POWER, 100, 100)], 2.0)  # and its next report repeats it
    assert changes.match(POWER, 100.0, 2.5) is None


def test_what_is_kept_per_entity_is_bounded() -> None:
    changes = _plug_at(-1)
    for step in range(10 * PublishedChanges.KEEP):
        changes.record([(POWER, step, step)], float(step))
    newest = 10 * PublishedChanges.KEEP - 1
    assert changes.match(POWER, float(newest), newest + 0.5) == float(newest)
    assert changes.match(POWER, 0.0, newest + 1.0) is None  # long forgotten


def test_a_report_that_changes_only_attributes_is_a_change() -> None:
    # A thermostat stays in "heat"; its current temperature, an attribute, moves, and the hub
    # stamps that too.
    thermostat = ("hall", "thermostat")
    changes = PublishedChanges()
    changes.known(thermostat, {"state": "heat", "current": 20.5})
    changes.record([(thermostat, "heat", (("state", "heat"), ("current", 20.5)))], 1.0)
    changes.record([(thermostat, "heat", (("state", "heat"), ("current", 20.7)))], 2.0)
    assert changes.match(thermostat, "heat", 2.1) == 2.0
