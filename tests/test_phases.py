"""The run's phase clock: every second goes to exactly one phase, and the end summary's lines read back."""

import pipelines.phases as phases
from pipelines.console import end_summary
from pipelines.phases import DATA, LOADING, SAVING, TRAINING, PhaseClock, parse_phase_lines


class FakeTime:
    """A clock that moves only when told to (time.time as the phase clock reads it)."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_clock_charges_each_second_to_the_phase_it_was_spent_in(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(phases.time, "time", fake)
    clock = PhaseClock(started=fake.now - 2.0)  # two seconds of imports before the clock was made
    fake.now += 1.0
    clock.switch(DATA)
    fake.now += 3.0
    clock.switch(TRAINING)
    fake.now += 5.0
    with clock.phase(SAVING):  # a checkpoint in the middle of training
        fake.now += 0.5
    fake.now += 4.0
    totals = clock.totals()
    assert totals[LOADING] == 3.0 and totals[DATA] == 3.0 and totals[SAVING] == 0.5 and totals[TRAINING] == 9.0
    assert sum(totals.values()) == 15.5  # nothing counted twice, nothing lost


def test_a_phase_that_raises_still_hands_the_time_back(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(phases.time, "time", fake)
    clock = PhaseClock(first_phase=TRAINING)
    try:
        with clock.phase(SAVING):
            fake.now += 2.0
            raise OSError("disk full")
    except OSError:
        pass
    fake.now += 1.0
    assert clock.totals()[SAVING] == 2.0 and clock.totals()[TRAINING] == 1.0


def test_the_end_summary_lists_the_phases_so_that_they_parse_back():
    seconds = {name: 0.0 for name in phases.PHASES} | {LOADING: 4.9, DATA: 2.0, TRAINING: 13.8, SAVING: 0.1}
    text = end_summary([("/out", "the erased model")], seconds, "pipe = ...")
    assert "wall time: 21 s" in text and "    training: 13.8 s ( 66%)" in text
    assert "encoding" not in text  # a phase that took no time is left out
    assert parse_phase_lines(text) == seconds
