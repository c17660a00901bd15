"""The clock-sanity rule the processors and the sink share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentstream.core.clock_sanity import check_event_time, plausible_event_times
from agentstream.core.config import ClockSettings, load_settings

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_plausible_times_pass() -> None:
    settings = load_settings()
    assert check_event_time(NOW, NOW, settings) is None
    assert check_event_time(NOW + timedelta(seconds=300), NOW, settings) is None
    assert check_event_time(NOW - timedelta(days=90), NOW, settings) is None


def test_the_future_and_the_far_past_are_refused_with_the_setting_named() -> None:
    clock = ClockSettings(max_future_skew_s=60, max_past_s=86_400)
    ahead = check_event_time(datetime(9999, 1, 1, tzinfo=UTC), NOW, clock)
    assert ahead is not None
    assert "ahead of the clock" in ahead
    assert "clock.max_future_skew_s is 60" in ahead
    assert check_event_time(NOW + timedelta(seconds=61), NOW, clock) is not None
    behind = check_event_time(NOW - timedelta(days=2), NOW, clock)
    assert behind is not None
    assert "2.0 days behind" in behind
    assert "clock.max_past_s" in behind


def test_the_plausible_pair_is_what_the_rule_accepts_at_its_edges() -> None:
    clock = ClockSettings(max_future_skew_s=60.5, max_past_s=86_400)
    earliest, latest = plausible_event_times(NOW, clock)
    # the pair, from the settings by hand: 60.5 s ahead, one day behind
    assert latest == datetime(2026, 11, 30, 12, 1, 0, 500_000, tzinfo=UTC)
    assert earliest == datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    one = timedelta(microseconds=1)
    for inside in (earliest, latest, NOW):
        assert check_event_time(inside, NOW, clock) is None
    for outside in (earliest - one, latest + one):
        assert check_event_time(outside, NOW, clock) is not None


def test_settings_past_what_a_datetime_holds_make_the_pair_open_ended() -> None:
    for past, ahead in ((1e12, 1e13), (float("inf"), float("inf"))):
        clock = ClockSettings(max_future_skew_s=ahead, max_past_s=past)
        earliest, latest = plausible_event_times(NOW, clock)
        assert earliest == datetime.min.replace(tzinfo=UTC)
        assert latest == datetime.max.replace(tzinfo=UTC)
        # what the rule itself says of the far ends
        assert check_event_time(earliest, NOW, clock) is None
        assert check_event_time(latest, NOW, clock) is None
