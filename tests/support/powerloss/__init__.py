"""The power-loss harness: record a workload's file I/O, build the store directories a power
loss could leave, and check each against what the workload was told was stored.

1. ``record``: the workload runs in a child process with ``recorder.c`` (built here with
   ``cc``) in ``LD_PRELOAD``; every write, flush, truncate, rename and unlink of a file
   under the store directory goes to a trace, in call order, with the bytes, and so do the
   workload's own markers (each operation it attempts, and each one acknowledged).
2. ``crash_states``: a crash after trace record k leaves, for each file, what its last
   flush made durable plus any subset of the later writes, chosen per 512-byte sector (so
   writes may land out of order, or torn at sector boundaries); within one sector the
   content is that of the last write that persisted. File creation, rename, truncate and
   unlink are taken as durable in order (the metadata ordering of ext4's default mode); the
   LMDB lock file is left out (stale after a reboot). Per crash point: the state where
   nothing unflushed persisted, the one where everything did, and seeded random subsets.
3. ``check_states``: each state is opened by a new process, as after a reboot (another boot
   id), and checked: every acknowledged event present once with its bytes, nothing never
   attempted, positions 1..n, versions 1..n per actor, batches whole, acknowledged snapshots
   present, ``verify_store`` clean, and a new write accepted.

``python -m support.powerloss`` (from tests/) prints the table for every engine, durability
mode and workload. The numbers: see the README's "Power-loss proof".
"""
