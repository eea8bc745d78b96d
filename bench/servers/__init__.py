"""The servers under test, other than tidings itself (which is imported from src/).

Each does the same job: keep a set of subscribers per topic and send every published
frame to each of them. They speak the ``simple`` dialect of :mod:`bench.wire`.
"""
