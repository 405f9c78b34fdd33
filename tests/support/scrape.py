"""Read /metrics as Prometheus would: its text parsed by prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: ``(sample name, sorted labels) -> value``; a series that
    appears twice fails the test (Prometheus would reject the scrape)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series = (sample.name, tuple(sorted(sample.labels.items())))
            assert series not in found, f"series {series} appears twice"
            found[series] = sample.value
    return found


def by_name(found: dict, sample: str, label: str = "name") -> dict[str, float]:
    """The values of one sample name by one label's value (series with other labels too are kept
    under that label's value only when it is their one label)."""
    return {dict(labels)[label]: value for (name, labels), value in found.items()
            if name == sample and len(labels) == 1 and labels[0][0] == label}
