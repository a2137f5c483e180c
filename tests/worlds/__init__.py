"""Worlds the engine was not built for: outlet catalogues of four shapes and a bring-your-own universe with its
population evidence, generated here, independently of ``engine.world`` (own RNG, own laws, own tz reading).

    python -m tests.worlds small_local worlds/small_local        # one world directory
    python -m tests.worlds all worlds/                          # every kind, one folder each
"""
