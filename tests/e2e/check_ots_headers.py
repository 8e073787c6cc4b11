#!/usr/bin/python3
"""Checks one .ots with the reference OpenTimestamps library (Debian python3-opentimestamps),
offline, against raw 80-byte Bitcoin block headers named <height>.hdr in a directory (the layout
of an anchord evidence bundle's headers/).

usage: check_ots_headers.py PROOF.ots DIGEST_HEX HEADERS_DIR

Prints one JSON object. Exit status: 0 = the proof is for DIGEST and every Bitcoin attestation's
commitment is the merkle root of its bundled header (at least one); 1 = the proof does not parse;
2 = the proof is for another digest; 3 = no Bitcoin attestation; 4 = a header is missing or does
not match its attestation.
"""
import json
import os
import sys

from bitcoin.core import CBlockHeader
from opentimestamps.core.notary import BitcoinBlockHeaderAttestation
from opentimestamps.core.serialize import StreamDeserializationContext
from opentimestamps.core.timestamp import DetachedTimestampFile


def main():
    proof, digest_hex, headers_dir = sys.argv[1:4]
    out = {"proof": proof, "verified_heights": [], "error": None}
    try:
        with open(proof, "rb") as f:
            dtf = DetachedTimestampFile.deserialize(StreamDeserializationContext(f))
    except Exception as e:  # the reference parser's own error
        out["error"] = "does not parse: %r" % (e,)
        print(json.dumps(out))
        return 1
    if dtf.file_digest.hex() != digest_hex.lower():
        out["error"] = "proof digest %s is not %s" % (dtf.file_digest.hex(), digest_hex)
        print(json.dumps(out))
        return 2
    for msg, att in dtf.timestamp.all_attestations():
        if not isinstance(att, BitcoinBlockHeaderAttestation):
            continue
        path = os.path.join(headers_dir, "%d.hdr" % att.height)
        try:
            with open(path, "rb") as f:
                header = CBlockHeader.deserialize(f.read())
            att.verify_against_blockheader(msg, header)
        except Exception as e:
            out["error"] = "block %d: %r" % (att.height, e)
            print(json.dumps(out))
            return 4
        out["verified_heights"].append(att.height)
    if not out["verified_heights"]:
        out["error"] = "no Bitcoin attestation"
        print(json.dumps(out))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
