"""Launchers: run the grpokit pipeline somewhere else (Amazon SageMaker).

Each launcher builds its job description with pure functions (config in, request out) that tests
check without a cloud, and talks to the cloud only at a thin edge. Cloud SDKs are optional extras,
imported inside the functions that need them, so `grpokit --help` stays fast.
"""
