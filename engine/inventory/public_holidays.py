"""Public holidays by region, for ``PH`` in a store's opening hours.

A store's ``country`` (stores.csv) names its region: an ISO 3166-1 country
code (``FR``), or a country and one of its subdivisions where holidays
differ inside the country (``DE-BY`` Bavaria, ``DE-BE`` Berlin, ``GB-ENG``
England, ``US-NY``).  The dates come from python-holidays (its public
holidays, observed days included, as the country's law gives them);
Maple keeps no calendar of its own.

Each region's dates are worked out a year at a time, once, and kept:
last year, this year and next year when data whose hours say PH for the
region is loaded, any other year on first use.  A Decide asks at most once per store-hours and
date (``OpeningHours.spans_on`` remembers the answer).
"""
from __future__ import annotations

import threading
import time
from datetime import date
from functools import lru_cache

import holidays

from ..diagnostics import did_you_mean


class PublicHolidays:
    """The public holidays of one region: ``day in calendar``."""

    __slots__ = ("region", "_country", "_subdiv", "_years", "_lock")

    def __init__(self, region: str, country: str, subdiv: str | None):
        self.region, self._country, self._subdiv = region, country, subdiv
        self._years: dict[int, dict[date, str]] = {}
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Work out last year's, this year's and next year's dates now (the
        loader calls it for a region some store's hours say PH for), so no
        Decide pays for them; a region only named is never worked out."""
        this_year = time.gmtime().tm_year
        for year in (this_year - 1, this_year, this_year + 1):
            self._year(year)

    def _year(self, year: int) -> dict[date, str]:
        days = self._years.get(year)
        if days is None:
            with self._lock:
                days = self._years.get(year)
                if days is None:
                    days = dict(holidays.country_holidays(self._country, subdiv=self._subdiv, years=year))
                    self._years[year] = days
        return days

    def __contains__(self, day: date) -> bool:
        return day in self._year(day.year)

    def name(self, day: date) -> str | None:
        """The holiday's name (``"Epiphany"``), None on other days."""
        return self._year(day.year).get(day)

    def __repr__(self) -> str:
        return f"PublicHolidays({self.region!r})"


class NoHolidays:
    """Stands in for a region that could not be read (its row is reported
    and skipped anyway): no day is a holiday."""

    region = None

    def __contains__(self, day: date) -> bool:
        return False

    def name(self, day: date) -> None:
        return None


@lru_cache(maxsize=None)
def _supported() -> dict[str, tuple[str, ...]]:
    return {c: tuple(s) for c, s in holidays.list_supported_countries().items()}


def public_holidays(region: str) -> PublicHolidays:
    """The calendar of ``region`` (``"DE-BY"``, ``"FR"``; letters in any
    case), one per region; ValueError saying what is wrong (with a
    suggestion) otherwise."""
    country, sep, subdiv = region.strip().partition("-")
    country = country.upper()
    supported = _supported()
    if country not in supported:
        near = did_you_mean(country, supported)
        raise ValueError(f"{region!r} is not a country Maple knows public holidays for"
                         f"{f'; {near}' if near else ''} (an ISO 3166 code such as GB, DE-BY or US-NY)")
    subdivisions = supported[country]
    if sep:
        match = next((s for s in subdivisions if s.upper() == subdiv.upper()), None)
        if match is None:
            if not subdivisions:
                raise ValueError(f"{region!r}: {country} has no subdivisions for holidays; write {country}")
            near = did_you_mean(subdiv.upper(), subdivisions)
            listed = " ".join(subdivisions[:20]) + (" ..." if len(subdivisions) > 20 else "")
            raise ValueError(f"{region!r}: {country} has no subdivision {subdiv!r}"
                             f"{f'; {near}' if near else ''} (its subdivisions: {listed})")
        subdiv = match
    return _calendar(f"{country}-{subdiv}" if sep else country, country, subdiv if sep else None)


@lru_cache(maxsize=256)
def _calendar(region: str, country: str, subdiv: str | None) -> PublicHolidays:
    return PublicHolidays(region, country, subdiv)
