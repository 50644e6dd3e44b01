# Sourced by gdb (test_ustack.py): the physical frames of the current
# thread, innermost first, one line each: FRAME pc kind name. Inlined
# frames (they share their caller's pc) and the tail calls gdb infers from
# DWARF call sites (no return address of theirs is on the stack) are left
# out: a stack walk sees only real calls.
import gdb

f = gdb.newest_frame()
while f is not None:
    if f.type() not in (gdb.INLINE_FRAME, gdb.TAILCALL_FRAME):
        kind = "signal" if f.type() == gdb.SIGTRAMP_FRAME else "normal"
        print("FRAME %#x %s %s" % (f.pc(), kind, f.name() or "??"))
    f = f.older()
