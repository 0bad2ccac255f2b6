"""Stubs generated from proto/backprop/v1/backprop.proto by clients/python/regen.sh.

Do not edit: run regen.sh (tests/test_stubs.py fails when these differ from its output).
"""
