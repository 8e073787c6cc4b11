#!/usr/bin/python3
"""An outside probe: drives every RPC of every anchord service from an independent client.

The client is Debian's python3-grpcio with stubs generated from proto/ at run time (python3-grpc-
tools), nothing of anchord's C++. It starts a real stack on loopback (`anchorctl local --sandbox`),
sends malformed and hostile inputs to every RPC (malformed digests, invalid job names, paths
outside the root, oversized chunks and ids, garbage page tokens, 1 ms deadlines, unknown methods,
forged hand-offs), checks that each gets a clear status (the code, and a message naming the
field), and that every service still answers SERVING afterwards.

Usage: outside_probe.py ANCHORCTL PROTO_DIR
Exit 0 when every check passed; 1 with one line per failed check otherwise.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc
from grpc_tools import protoc

FAILURES = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def generate_stubs(proto_dir, out_dir):
    os.makedirs(out_dir)
    includes = ["-I" + proto_dir, "-I/usr/include"]
    files = ["anchord/v1/%s.proto" % n for n in ("common", "hasher", "submitter", "poller")]
    rc = protoc.main(["protoc"] + includes + ["--python_out=" + out_dir,
                                              "--grpc_python_out=" + out_dir] + files)
    if rc != 0:
        raise SystemExit("protoc failed for %s" % files)
    # Stubs of grpc/health/v1/health.proto would be the module grpc.health.v1.health_pb2, which
    # the installed grpc package shadows: compile a copy under another file name (same proto
    # package, so the method path is still /grpc.health.v1.Health/Check).
    health_dir = os.path.join(out_dir, "_health")
    os.makedirs(health_dir)
    shutil.copy("/usr/share/grpc-proto/grpc/health/v1/health.proto",
                os.path.join(health_dir, "probe_health.proto"))
    rc = protoc.main(["protoc", "-I" + health_dir, "--python_out=" + out_dir,
                      "--grpc_python_out=" + out_dir, "probe_health.proto"])
    if rc != 0:
        raise SystemExit("protoc failed for health.proto")
    sys.path.insert(0, out_dir)


def start_stack(anchorctl, work):
    root = os.path.join(work, "root")
    os.makedirs(os.path.join(root, "docs"))
    for i in range(3):
        with open(os.path.join(root, "docs", "f%d.txt" % i), "w") as f:
            f.write("probe file %d\n" % i)
    data = os.path.join(work, "ctl")
    log = open(os.path.join(work, "local.log"), "w")
    proc = subprocess.Popen(
        [anchorctl, "--data-dir", data, "local", "--sandbox", "--root", root,
         "--sandbox-window-seconds", "2", "--sandbox-confirm-after-seconds", "1",
         "--poll-interval-seconds", "1"],
        stdout=log, stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("ANCHORD_")})
    stack_file = os.path.join(data, "run", "stack.json")
    for _ in range(600):  # at most 60 s
        if os.path.exists(stack_file):
            with open(stack_file) as f:
                try:
                    return proc, json.load(f), os.path.join(data, "run")
                except ValueError:
                    pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the stack did not start; see " + log.name)


def code_of(call):
    try:
        call()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


def expect_status(what, call, code, field=None):
    got, msg = code_of(call)
    ok = got == code and (field is None or field in msg)
    check(ok, "%s -> %s%s (got %s: %.200r)" % (what, code.name,
                                                " naming %r" % field if field else "", got.name, msg))


def main():
    anchorctl, proto_dir = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="anchord_probe_")
    generate_stubs(proto_dir, os.path.join(work, "gen"))
    from anchord.v1 import common_pb2, common_pb2_grpc
    from anchord.v1 import hasher_pb2, hasher_pb2_grpc
    from anchord.v1 import poller_pb2, poller_pb2_grpc
    from anchord.v1 import submitter_pb2, submitter_pb2_grpc
    import probe_health_pb2
    import probe_health_pb2_grpc

    proc, info, run_dir = start_stack(anchorctl, work)
    try:
        big = 32 * 1024 * 1024
        opts = [("grpc.max_receive_message_length", big), ("grpc.max_send_message_length", big)]
        ch = {k: grpc.insecure_channel(info[k], options=opts)
              for k in ("hasher", "submitter", "poller", "submitter_internal", "poller_internal")}
        hasher = hasher_pb2_grpc.HasherServiceStub(ch["hasher"])
        submitter = submitter_pb2_grpc.SubmitterServiceStub(ch["submitter"])
        poller = poller_pb2_grpc.PollerServiceStub(ch["poller"])
        T = 20  # seconds per call
        bad_digest = b"\x01" * 5
        digest = bytes(range(32))

        # ---- hasher -------------------------------------------------------------------------
        expect_status("HashTree path outside the root",
                      lambda: list(hasher.HashTree(hasher_pb2.HashTreeRequest(path="../.."),
                                                   timeout=T)),
                      grpc.StatusCode.INVALID_ARGUMENT, "path")
        expect_status("HashTree invalid job name",
                      lambda: list(hasher.HashTree(
                          hasher_pb2.HashTreeRequest(job="no spaces/allowed", path="docs"),
                          timeout=T)),
                      grpc.StatusCode.INVALID_ARGUMENT, "job")
        expect_status("HashTree absolute path",
                      lambda: list(hasher.HashTree(hasher_pb2.HashTreeRequest(path="/etc"),
                                                   timeout=T)),
                      grpc.StatusCode.INVALID_ARGUMENT, "path")
        expect_status("ListFiles invalid job name",
                      lambda: list(hasher.ListFiles(hasher_pb2.ListFilesRequest(job="x" * 500),
                                                    timeout=T)),
                      grpc.StatusCode.INVALID_ARGUMENT, "job")

        def chunk(file_id, data, name="a.txt", size=None, last=True):
            return hasher_pb2.HashFilesRequest(
                file_id=file_id, data=data, last=last, dry_run=True,
                metadata=common_pb2.FileMetadata(filename=name,
                                                 size_bytes=len(data) if size is None else size))

        huge_id = "i" * (5 * 1024 * 1024)
        items = [chunk("", b"x"), chunk("badname", b"abc", name="a/b"),
                 chunk("oversized", b"z" * (5 * 1024 * 1024)), chunk(huge_id, b"abc"),
                 chunk("good-after", b"good bytes")]
        results = {}
        try:
            for r in hasher.HashFiles(iter(items), timeout=T):
                results[r.file_id] = r
            stream_ok = True
        except grpc.RpcError as e:
            stream_ok = False
            results["__error__"] = e.details()
        check(stream_ok, "HashFiles stream with hostile items ends OK (%s)"
              % results.get("__error__", ""))
        def item(fid, code, field):
            r = results.get(fid)
            check(r is not None and r.status.code == code and field in r.status.message,
                  "HashFiles item %r -> code %d naming %r (got %s)"
                  % (fid[:16], code, field, None if r is None else (r.status.code,
                                                                    r.status.message[:120])))
        item("", 3, "file_id")
        item("badname", 3, "metadata.filename")
        item("oversized", 3, "data")
        echoed = [k for k in results if k.startswith("iii")]
        check(len(echoed) == 1 and len(echoed[0]) <= 64,
              "HashFiles 5 MiB file_id is echoed as at most 64 bytes (got %s)"
              % [len(k) for k in echoed])
        if echoed:
            r = results[echoed[0]]
            check(r.status.code == 3 and "file_id" in r.status.message and
                  len(r.status.message) < 1024, "HashFiles 5 MiB file_id -> code 3 naming file_id")
        good = results.get("good-after")
        check(good is not None and good.status.code == 0 and len(good.digest) == 32,
              "HashFiles good item after the hostile ones gets its digest")
        expect_status("HashFiles message over the 8 MiB receive limit",
                      lambda: list(hasher.HashFiles(iter([chunk("big", b"q" * (9 << 20))]),
                                                    timeout=T)),
                      grpc.StatusCode.RESOURCE_EXHAUSTED)

        # ---- submitter ----------------------------------------------------------------------
        def submit_req(rid, d, providers=("proofd",), name="f.pdf", job=""):
            return submitter_pb2.SubmitRequest(
                request_id=rid, digest=d, providers=list(providers),
                metadata=common_pb2.FileMetadata(filename=name, size_bytes=10, job=job))

        huge_rid = "r" * (5 * 1024 * 1024)
        reqs = [submit_req("bad-digest", bad_digest), submit_req("bad-provider", digest, ["nope"]),
                submit_req("bad-job", digest, job="a b"), submit_req(huge_rid, digest),
                submit_req("good-after", digest)]
        acks = {}
        try:
            for a in submitter.Submit(iter(reqs), timeout=T):
                acks[a.request_id] = a
            sub_ok = True
        except grpc.RpcError as e:
            sub_ok = False
            acks["__error__"] = e.details()
        check(sub_ok, "Submit stream with hostile items ends OK (%s)" % acks.get("__error__", ""))
        for rid, field in (("bad-digest", "digest"), ("bad-provider", "providers[0]"),
                           ("bad-job", "metadata.job")):
            a = acks.get(rid)
            check(a is not None and a.status.code == 3 and field in a.status.message,
                  "Submit item %r -> code 3 naming %r (got %s)"
                  % (rid, field, None if a is None else (a.status.code, a.status.message[:120])))
        echoed = [k for k in acks if k.startswith("rrr")]
        check(len(echoed) == 1 and len(echoed[0]) <= 64 and acks[echoed[0]].status.code == 3 and
              "request_id" in acks[echoed[0]].status.message,
              "Submit 5 MiB request_id -> code 3 naming request_id, echoed as at most 64 bytes")
        good = acks.get("good-after")
        check(good is not None and good.status.code == 0,
              "Submit good item after a 5 MiB request_id is acknowledged")
        expect_status("ResumeQueue unknown provider",
                      lambda: submitter.ResumeQueue(
                          submitter_pb2.ResumeQueueRequest(provider="x" * 300), timeout=T),
                      grpc.StatusCode.INVALID_ARGUMENT, "provider")

        # ---- poller -------------------------------------------------------------------------
        expect_status("GetProof malformed digest",
                      lambda: poller.GetProof(poller_pb2.GetProofRequest(digest=bad_digest),
                                              timeout=T),
                      grpc.StatusCode.INVALID_ARGUMENT, "digest")
        expect_status("GetProof unknown digest",
                      lambda: poller.GetProof(poller_pb2.GetProofRequest(
                          digest=b"\x07" * 32, provider="p" * 100000), timeout=T),
                      grpc.StatusCode.NOT_FOUND, "digest")
        expect_status("ListProofs garbage page token",
                      lambda: poller.ListProofs(poller_pb2.ListProofsRequest(
                          page_token="!!garbage!!"), timeout=T),
                      grpc.StatusCode.INVALID_ARGUMENT, "page_token")
        expect_status("ListProofs page size out of range",
                      lambda: poller.ListProofs(poller_pb2.ListProofsRequest(page_size=100000),
                                                timeout=T),
                      grpc.StatusCode.INVALID_ARGUMENT, "page_size")
        expect_status("ListProofs malformed digest filter",
                      lambda: poller.ListProofs(poller_pb2.ListProofsRequest(
                          digests=[bad_digest]), timeout=T),
                      grpc.StatusCode.INVALID_ARGUMENT, "digests[0]")
        expect_status("DownloadProof malformed digest",
                      lambda: list(poller.DownloadProof(poller_pb2.DownloadProofRequest(
                          digest=bad_digest), timeout=T)),
                      grpc.StatusCode.INVALID_ARGUMENT, "digest")
        expect_status("DownloadProofs with more than 1,000 proofs",
                      lambda: list(poller.DownloadProofs(poller_pb2.DownloadProofsRequest(
                          proofs=[poller_pb2.DownloadProofRequest(digest=b"\x07" * 32)] * 1001),
                          timeout=T)),
                      grpc.StatusCode.INVALID_ARGUMENT, "proofs")
        answers = list(poller.DownloadProofs(poller_pb2.DownloadProofsRequest(
            proofs=[poller_pb2.DownloadProofRequest(digest=bad_digest),
                    poller_pb2.DownloadProofRequest(digest=b"\x07" * 32, provider="p" * 100000)]),
            timeout=T))
        check(len(answers) == 2 and answers[0].index == 0
              and answers[0].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
              and "proofs[0].digest" in answers[0].status.message
              and answers[1].index == 1
              and answers[1].status.code == grpc.StatusCode.NOT_FOUND.value[0]
              and len(answers[1].status.message) < 1000,
              "DownloadProofs answers a malformed and an unknown digest each with its status, "
              "quoting at most a little of a 100,000-byte provider (got %.300r)" % (answers,))
        expect_status("Watch malformed digest",
                      lambda: list(poller.Watch(poller_pb2.WatchRequest(digest=bad_digest),
                                                timeout=T)),
                      grpc.StatusCode.INVALID_ARGUMENT, "digest")
        expect_status("Watch with a 1 ms deadline",
                      lambda: list(poller.Watch(poller_pb2.WatchRequest(include_current=True),
                                                timeout=0.001)),
                      grpc.StatusCode.DEADLINE_EXCEEDED)
        # Calls that may finish within 1 ms on a fast machine: either outcome is a clear status;
        # what matters is that the services stay up (checked at the end).
        for what, call in (
                ("Submit stream with a 1 ms deadline",
                 lambda: list(submitter.Submit(iter([submit_req("late", digest)]),
                                               timeout=0.001))),
                ("HashTree with a 1 ms deadline",
                 lambda: list(hasher.HashTree(hasher_pb2.HashTreeRequest(
                     path="docs", dry_run=True), timeout=0.001))),
                ("GetProof with a 1 ms deadline",
                 lambda: poller.GetProof(poller_pb2.GetProofRequest(digest=digest),
                                         timeout=0.001))):
            got, msg = code_of(call)
            check(got in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OK,
                          grpc.StatusCode.NOT_FOUND),
                  "%s -> DEADLINE_EXCEEDED or its normal answer (got %s: %.100r)"
                  % (what, got.name, msg))

        # ---- StatusService on every service ---------------------------------------------------
        for name in ("hasher", "submitter", "poller"):
            status = common_pb2_grpc.StatusServiceStub(ch[name])
            expect_status("%s Locate malformed digest" % name,
                          lambda: status.Locate(common_pb2.LocateRequest(digest=bad_digest),
                                                timeout=T),
                          grpc.StatusCode.INVALID_ARGUMENT, "digest")
            expect_status("%s SummarizeJob invalid job" % name,
                          lambda: status.SummarizeJob(
                              common_pb2.SummarizeJobRequest(job="../../etc"), timeout=T),
                          grpc.StatusCode.INVALID_ARGUMENT, "job")

        # ---- internal RPCs ------------------------------------------------------------------
        forged = poller_pb2.TrackRequest(
            request_id="forged", proof=common_pb2.Proof(
                digest=digest, provider="proofd", proof_id="forged-id",
                state=common_pb2.DIGEST_STATE_CONFIRMED, bitcoin_block_height=900000))
        reanchor = submitter_pb2.ReanchorRequest(
            digest=digest, provider="proofledger", stalled_provider="proofd",
            metadata=common_pb2.FileMetadata(filename="f.pdf", size_bytes=10))
        internal_poller = poller_pb2_grpc.PollerServiceStub(ch["poller_internal"])
        internal_submitter = submitter_pb2_grpc.SubmitterServiceStub(ch["submitter_internal"])
        expect_status("Track on the public port",
                      lambda: list(poller.Track(iter([forged]), timeout=T)),
                      grpc.StatusCode.PERMISSION_DENIED, "internal")
        expect_status("Track on the internal port without the token",
                      lambda: list(internal_poller.Track(iter([forged]), timeout=T)),
                      grpc.StatusCode.UNAUTHENTICATED, "token")
        expect_status("Track on the internal port with a wrong token",
                      lambda: list(internal_poller.Track(
                          iter([forged]), timeout=T,
                          metadata=[("x-anchord-internal-token", "guess")])),
                      grpc.StatusCode.UNAUTHENTICATED, "token")
        expect_status("Reanchor on the public port",
                      lambda: submitter.Reanchor(reanchor, timeout=T),
                      grpc.StatusCode.PERMISSION_DENIED, "internal")
        expect_status("Reanchor on the internal port without the token",
                      lambda: internal_submitter.Reanchor(reanchor, timeout=T),
                      grpc.StatusCode.UNAUTHENTICATED, "token")
        expect_status("GetProof on the poller's internal port",
                      lambda: internal_poller.GetProof(poller_pb2.GetProofRequest(digest=digest),
                                                       timeout=T),
                      grpc.StatusCode.PERMISSION_DENIED, "public")
        # A legitimate peer (holding the stack's token) forging CONFIRMED gets it stored as
        # PENDING: the poller confirms only through the provider.
        with open(os.path.join(run_dir, "internal.token")) as f:
            token = f.read().strip()
        forged_digest = bytes([0xfe] * 32)
        forged.proof.digest = forged_digest
        acks = list(internal_poller.Track(iter([forged]), timeout=T,
                                          metadata=[("x-anchord-internal-token", token)]))
        check(len(acks) == 1 and acks[0].status.code == 0, "forged Track with the token is acked")
        proof = poller.GetProof(poller_pb2.GetProofRequest(digest=forged_digest), timeout=T).proof
        check(proof.state != common_pb2.DIGEST_STATE_CONFIRMED,
              "a forged CONFIRMED hand-off is not CONFIRMED (state %s)"
              % common_pb2.DigestState.Name(proof.state))

        # ---- unknown methods and bounded metrics ----------------------------------------------
        long_method = "/anchord.v1.PollerService/" + "Invented" * 700
        for name in ("hasher", "submitter", "poller"):
            unknown = ch[name].unary_unary(long_method, request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
            expect_status("%s unknown method" % name, lambda: unknown(b"", timeout=T),
                          grpc.StatusCode.UNIMPLEMENTED)
        for name, addr in sorted(info.get("metrics", {}).items()):
            try:
                text = urllib.request.urlopen("http://%s/metrics" % addr, timeout=T).read().decode()
            except OSError as e:
                check(False, "%s /metrics readable (%s)" % (name, e))
                continue
            methods = set()
            for line in text.splitlines():
                if line.startswith("anchord_rpc_duration_seconds_count{"):
                    start = line.find('method="') + len('method="')
                    methods.add(line[start:line.find('"', start)])
            check(all(len(m) < 64 for m in methods) and "unknown" in methods,
                  "%s metrics label only known methods plus \"unknown\" (%s)"
                  % (name, sorted(m[:40] for m in methods)))

        # ---- still serving -------------------------------------------------------------------
        for name in ("hasher", "submitter", "poller", "submitter_internal", "poller_internal"):
            health = probe_health_pb2_grpc.HealthStub(ch[name])
            try:
                r = health.Check(probe_health_pb2.HealthCheckRequest(service=""), timeout=T)
                serving = r.status == probe_health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError as e:
                serving = False
            check(serving, "%s still SERVING after the probe" % name)
        check(proc.poll() is None, "anchorctl local (and its stack) still running")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if not FAILURES:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept " + work)

    if FAILURES:
        print("%d check(s) failed:" % len(FAILURES))
        for f in FAILURES:
            print("  " + f)
        return 1
    print("outside probe: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
