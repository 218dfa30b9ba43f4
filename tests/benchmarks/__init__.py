"""Tests of the benchmarks: they run, and what they compare is what they say."""
