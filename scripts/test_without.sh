#!/usr/bin/env bash
# Run the test suite on "a kernel without" a broad set of BPF features (see
# scripts/kernel-without): every map type, program type, link kind and command
# below is refused the way an older or locked-down kernel refuses it. Tests
# that need one must skip on a feature probe's answer; any failure here is a
# test that assumes a feature instead of asking for it.
# Extra arguments go to pytest; KERNEL_WITHOUT_SPEC overrides the list.
set -euo pipefail
cd "$(dirname "$0")/.."
# map types: sockmap..xskmap (15-17), cgroup storage (19, 21), queue/stack (22, 23),
#   sk/inode/task storage (24, 28, 29), struct_ops (26), ringbuf (27) EPERM, bloom (30),
#   user ringbuf (31), cgrp storage (32), arena (33) EPERM
# program types: sk_lookup (30), syscall (31), netfilter (32), tracing (26), lsm (29) EPERM
# attach/link kinds: sk_lookup (36), XDP links (37), perf_event links (41), struct_ops (44),
#   netfilter (45), tcx (46, 47), uprobe_multi (48), iter (28), flow dissector (17)
# commands: batch ops (24-27), ENABLE_STATS (32), ITER_CREATE (33)
default='map=15,map=16,map=17,map=19,map=21,map=22,map=23,map=24,map=26,map=27:1,map=28,map=29,map=30,map=31,map=32,map=33:1,prog=26,prog=29:1,prog=30,prog=31,prog=32,attach=17,attach=28,attach=36,attach=37,attach=41:95,attach=44,attach=45,attach=46,attach=47,attach=48:95,cmd=24,cmd=25,cmd=26,cmd=27,cmd=32,cmd=33'
exec scripts/kernel-without "${KERNEL_WITHOUT_SPEC:-$default}" -- \
  "${PYTHON:-python3}" -m pytest tests -q -p no:cacheprovider -m "not slow" "$@"
