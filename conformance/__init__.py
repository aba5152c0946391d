"""hbproto's conformance suite: judge any implementation over the wire.

``python -m conformance udp://HOST:PORT`` (or the ``hbproto-conformance`` command) runs every
case of :mod:`conformance.cases` against an implementation serving there, and reports each as
PASS, NON-STRICT, FAIL, UNSUPPORTED, SKIPPED, INCONCLUSIVE or ERROR. ``--client-cmd
'their-peer connect {target}' --transport udp`` judges an initiator instead: the suite listens
and launches the command for each case (:mod:`conformance.client`, ``CONTRACT.md``). The test
vectors (``vectors.json``) and the SPEC's requirements (``requirements.json``) ship with it.
"""
