"""hbproto's conformance suite: judge any implementation over the wire.

``python -m conformance udp://HOST:PORT`` (or the ``hbproto-conformance`` command) runs every
case of :mod:`conformance.cases` against an implementation serving there, and reports each as
PASS, NON-STRICT, FAIL, UNSUPPORTED, SKIPPED, INCONCLUSIVE or ERROR. The test vectors
(``vectors.json``) and the SPEC's requirements (``requirements.json``) ship with it.
"""
