"""sessiond.v1's generated messages and gRPC stubs (clients/python/generate.py).

Never edited by hand: the test suite generates them again from proto/ and
fails when they differ.
"""
