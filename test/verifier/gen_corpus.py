#!/usr/bin/env python3
"""Writes the verifier corpus (accept/*.s, reject/*.s) from the tables
below. The files are the test data; this script only keeps families of
similar programs (every pt_regs field, every stack size...) consistent.
Run it from anywhere: python3 test/verifier/gen_corpus.py"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
progs = {"accept": {}, "reject": {}}


def add(kind_dir, name, body, kind="uprobe", maps=(), expect=None, kernel=None, opts=None, about=None):
    hdr = []
    if about:
        hdr.append("# " + about)
    hdr.append("# kind: " + kind)
    for m in maps:
        hdr.append("# map: " + m)
    if opts:
        hdr.append("# opts: " + opts)
    if expect:
        hdr.append("# expect: " + expect)
    if kernel:
        hdr.append("# kernel: " + kernel)
    assert name not in progs[kind_dir], name
    progs[kind_dir][name] = "\n".join(hdr) + "\n" + body.strip("\n") + "\n"


def acc(name, body, **kw):
    add("accept", name, body, **kw)


def rej(name, body, expect, **kw):
    add("reject", name, body, expect=expect, **kw)


HASH = "hash 4 8 64"
ARRAY = "array 4 8 16"
BIGARR = "array 4 256 4"
RINGBUF = "ringbuf 0 0 4096"
LOOKUP = """stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
lddw %r1, map_idx 0
call 1
"""

# ------------------------------------------------------------- accepted
PT_REGS = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
           "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss"]
for i, f in enumerate(PT_REGS):
    acc(f"ctx_pt_regs_{f}", f"ldxdw %r0, [%r1+{i * 8}]\nexit",
        about=f"reads pt_regs->{f}")
for off, sz in [(0, "w"), (4, "w"), (2, "h"), (7, "b"), (164, "w"), (166, "h")]:
    acc(f"ctx_narrow_{sz}_{off}", f"ldx{sz} %r0, [%r1+{off}]\nexit", about="narrow aligned ctx read")
acc("ctx_uretprobe_ax", "ldxdw %r0, [%r1+80]\nexit", kind="uretprobe", about="return value")
for a in range(6):
    acc(f"ctx_sys_enter_arg{a}", f"ldxdw %r0, [%r1+{16 + a * 8}]\nexit", kind="syscall_enter")
acc("ctx_sys_enter_nr", "ldxw %r0, [%r1+8]\nexit", kind="syscall_enter")
acc("ctx_sys_exit_ret", "ldxdw %r0, [%r1+16]\nexit", kind="syscall_exit")
acc("ctx_raw_tp_args", "ldxdw %r0, [%r1+0]\nldxdw %r2, [%r1+8]\nadd %r0, %r2\nexit", kind="raw_tp")

for sz, n in [("b", 1), ("h", 2), ("w", 4), ("dw", 8)]:
    for off in [-8, -64, -512 + 0]:
        acc(f"stack_{sz}_{-off}", f"st{sz} [%r10{off}], 7\nldx{sz} %r0, [%r10{off}]\nexit",
            about="store then load the same stack bytes")
acc("stack_spill_fill_ctx", "stxdw [%r10-8], %r1\nldxdw %r2, [%r10-8]\nldxdw %r0, [%r2+0]\nexit",
    about="a spilled ctx pointer is a ctx pointer again when filled")
acc("stack_spill_scalar_bounds",
    """ldxdw %r2, [%r1+112]
and %r2, 7
stxdw [%r10-16], %r2
ldxdw %r3, [%r10-16]
lsh %r3, 3
lddw %r1, map_idx 0
stw [%r10-4], 0
mov %r2, %r10
add %r2, -4
stxdw [%r10-24], %r3
call 1
jeq %r0, 0, out
ldxdw %r3, [%r10-24]
add %r0, %r3
ldxdw %r0, [%r0+0]
exit
out:
mov %r0, 0
exit""", maps=["array 4 64 1"], about="a spilled bounded scalar keeps its bounds")
acc("stack_zero_bytes", "stb [%r10-1], 0\nstb [%r10-2], 0\nldxh %r0, [%r10-2]\nexit")
acc("stack_ptr_arith", "mov %r2, %r10\nadd %r2, -16\nstdw [%r2+8], 1\nldxdw %r0, [%r10-8]\nexit")

for mt in ["hash 4 8 64", "array 4 8 16", "percpu_array 4 8 4", "lru_hash 4 8 64"]:
    t = mt.split()[0]
    acc(f"map_lookup_read_{t}", LOOKUP + "jeq %r0, 0, out\nldxdw %r0, [%r0+0]\nexit\nout:\nexit", maps=[mt],
        about="lookup, NULL check, read")
    acc(f"map_lookup_write_{t}", LOOKUP + "jne %r0, 0, hit\nmov %r0, 0\nexit\nhit:\nstdw [%r0+0], 5\nmov %r0, 0\nexit",
        maps=[mt], about="lookup, NULL check (jne), write")
acc("map_value_last_byte", LOOKUP + "jeq %r0, 0, out\nldxb %r0, [%r0+7]\nexit\nout:\nexit", maps=[HASH])
acc("map_value_copy_before_check", LOOKUP + "mov %r6, %r0\njeq %r0, 0, out\nldxdw %r0, [%r6+0]\nexit\nout:\nexit",
    maps=[HASH], about="the NULL check covers copies of the pointer")
acc("map_value_spill_before_check", LOOKUP + "stxdw [%r10-16], %r0\njeq %r0, 0, out\nldxdw %r1, [%r10-16]\nldxdw %r0, [%r1+0]\nexit\nout:\nexit",
    maps=[HASH], about="the NULL check covers spilled copies")
acc("map_update", "stw [%r10-4], 1\nstdw [%r10-16], 9\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -4\nmov %r3, %r10\nadd %r3, -16\nmov %r4, 0\ncall 2\nexit", maps=[HASH])
acc("map_delete", "stw [%r10-4], 1\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -4\ncall 3\nexit", maps=[HASH])
acc("map_key_from_map_value", LOOKUP + """jeq %r0, 0, out
mov %r2, %r0
lddw %r1, map_idx 1
call 1
out:
mov %r0, 0
exit""", maps=["array 4 8 4", "hash 4 8 16"], about="a key may live in another map's value")
acc("queue_push_pop", """stw [%r10-4], 3
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
mov %r3, 0
call 87
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -8
call 88
ldxw %r0, [%r10-8]
exit""", maps=["queue 0 4 8"], about="pop writes the uninitialised value buffer")
acc("stack_map_peek", "lddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -8\ncall 89\nldxdw %r0, [%r10-8]\nexit", maps=["stack 0 8 8"])

for idx_kind, bound in [("jlt", "jge %r2, 16, out"), ("jgt", "jgt %r2, 15, out"), ("and", "and %r2, 15"),
                        ("jle", "jle %r2, 15, ok\nja out\nok:"), ("mod", "mod %r2, 16")]:
    acc(f"bounded_index_{idx_kind}", LOOKUP + f"""jeq %r0, 0, out
ldxdw %r2, [%r6+112]
{bound}
lsh %r2, 3
add %r0, %r2
ldxdw %r0, [%r0+0]
exit
out:
mov %r0, 0
exit""".replace("ldxdw %r2, [%r6+112]", "ldxdw %r2, [%r6+112]"),
        maps=["array 4 128 1"], about="an index bounded before it scales into a map value",
        kernel="userspace bounds more ALU results (mod)" if idx_kind == "mod" else None)
# the ctx must survive in r6 for those: prepend a move
for k in list(progs["accept"]):
    if k.startswith("bounded_index_"):
        progs["accept"][k] = progs["accept"][k].replace("stw [%r10-4], 0\n", "mov %r6, %r1\nstw [%r10-4], 0\n", 1)
acc("bounded_index_jmp32", "mov %r6, %r1\n" + LOOKUP + """jeq %r0, 0, out
ldxw %r2, [%r6+112]
jge32 %r2, 16, out
lsh %r2, 3
add %r0, %r2
ldxdw %r0, [%r0+0]
exit
out:
mov %r0, 0
exit""", maps=["array 4 128 1"], about="a 32-bit load compared with jge32")
acc("bounded_index_signed", "mov %r6, %r1\n" + LOOKUP + """jeq %r0, 0, out
ldxdw %r2, [%r6+112]
jslt %r2, 0, out
jsgt %r2, 120, out
add %r0, %r2
ldxb %r0, [%r0+0]
exit
out:
mov %r0, 0
exit""", maps=["array 4 128 1"], about="signed bounds on both sides")
acc("bounded_byte_load", "mov %r6, %r1\n" + LOOKUP + """jeq %r0, 0, out
ldxb %r2, [%r6+112]
add %r0, %r2
ldxb %r0, [%r0+0]
exit
out:
mov %r0, 0
exit""", maps=["array 4 256 1"], about="a loaded byte is at most 255")

for n in [4, 16, 100]:
    acc(f"loop_const_{n}", f"""mov %r0, 0
mov %r1, 0
loop:
add %r0, %r1
add %r1, 1
jlt %r1, {n}, loop
exit""", about="bounded loop, proved to end by exploration")
acc("loop_stack_fill", """mov %r1, 0
loop:
mov %r2, %r10
add %r2, -64
mov %r3, %r1
lsh %r3, 3
add %r2, %r3
stdw [%r2+0], 0
add %r1, 1
jlt %r1, 8, loop
ldxdw %r0, [%r10-64]
exit""",
    about="stack writes in a loop, the offset known in each iteration")
acc("loop_shift_down", """ldxdw %r1, [%r1+112]
mov %r0, 0
loop:
jle %r1, 1, done
rsh %r1, 1
add %r0, 1
jlt %r0, 63, loop
done:
exit""", about="log2: ends because r0 is bounded")

acc("call_simple", "mov %r1, 3\ncall local f\nexit\nf:\nmov %r0, %r1\nadd %r0, 1\nexit")
acc("call_nested", "mov %r1, 1\ncall local a\nexit\na:\ncall local b\nadd %r0, 1\nexit\nb:\ncall local c\nadd %r0, 1\nexit\nc:\nmov %r0, 7\nexit")
acc("call_callee_writes_caller_stack", "mov %r1, %r10\nadd %r1, -8\ncall local f\nldxdw %r0, [%r10-8]\nexit\nf:\nstdw [%r1+0], 42\nmov %r0, 0\nexit")
acc("call_callee_stack", "mov %r1, 5\ncall local f\nexit\nf:\nstxdw [%r10-256], %r1\nldxdw %r0, [%r10-256]\nexit",
    about="each frame has its own 512 bytes; 32+256 combined")
acc("call_preserves_r6", "mov %r6, 11\ncall local f\nmov %r0, %r6\nexit\nf:\nmov %r6, 1\nmov %r0, 0\nexit",
    about="r6-r9 are the caller's own (the callee's r6 is a different register set)")
acc("call_map_in_callee", "call local f\nmov %r0, 0\nexit\nf:\n" + LOOKUP + "jeq %r0, 0, out\nldxdw %r0, [%r0+0]\nout:\nexit", maps=[HASH])

acc("global_data_rw", "lddw %r1, map_idx_value 0+8\nldxdw %r0, [%r1+0]\nadd %r0, 1\nstxdw [%r1+0], %r0\nexit",
    maps=["array 4 16 1"], about=".data through map_idx_value")
acc("global_rodata_read", "lddw %r1, map_idx_value 0+0\nldxw %r0, [%r1+4]\nexit", maps=["array 4 8 1 rdonly"])
acc("global_data_atomic", "lddw %r1, map_idx_value 0+0\nmov %r2, 1\nlock add [%r1+0], %r2\nmov %r0, 0\nexit",
    maps=["array 4 8 1"])

acc("ringbuf_submit", """lddw %r1, map_idx 0
mov %r2, 16
mov %r3, 0
call 131
jeq %r0, 0, out
stdw [%r0+8], 1
mov %r1, %r0
mov %r2, 0
call 132
out:
mov %r0, 0
exit""", maps=[RINGBUF])
acc("ringbuf_discard", """lddw %r1, map_idx 0
mov %r2, 8
mov %r3, 0
call 131
jne %r0, 0, have
exit
have:
mov %r1, %r0
mov %r2, 0
call 133
mov %r0, 0
exit""", maps=[RINGBUF])
acc("ringbuf_submit_or_discard", """mov %r6, %r1
lddw %r1, map_idx 0
mov %r2, 8
mov %r3, 0
call 131
jeq %r0, 0, out
mov %r7, %r0
ldxdw %r1, [%r6+112]
stxdw [%r7+0], %r1
mov %r1, %r7
mov %r2, 0
jeq %r1, 0, out
ldxdw %r3, [%r6+104]
jeq %r3, 0, drop
call 132
ja out
drop:
call 133
out:
mov %r0, 0
exit""", maps=[RINGBUF], about="every path submits or discards")
acc("ringbuf_output", "stdw [%r10-8], 1\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130\nexit", maps=[RINGBUF])
acc("ringbuf_query", "lddw %r1, map_idx 0\nmov %r2, 0\ncall 134\nexit", maps=[RINGBUF])
acc("ringbuf_record_comm", """lddw %r1, map_idx 0
mov %r2, 16
mov %r3, 0
call 131
jeq %r0, 0, out
mov %r6, %r0
mov %r1, %r6
mov %r2, 16
call 16
mov %r1, %r6
mov %r2, 0
call 132
out:
mov %r0, 0
exit""", maps=[RINGBUF], about="a record is memory a helper may fill")

acc("helper_probe_read_user", "mov %r3, %r1\nldxdw %r3, [%r3+112]\nmov %r1, %r10\nadd %r1, -32\nmov %r2, 32\ncall 112\nldxdw %r0, [%r10-32]\nexit",
    about="the helper initialises the stack it writes")
acc("helper_probe_read_user_str", "ldxdw %r3, [%r1+112]\nmov %r1, %r10\nadd %r1, -64\nmov %r2, 64\ncall 114\nexit")
acc("helper_probe_read_kernel", "ldxdw %r3, [%r1+112]\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 113\nexit")
acc("helper_probe_read_ctx_var", """ldxdw %r3, [%r1+112]
and %r3, 120
add %r3, %r1
mov %r1, %r10
add %r1, -8
mov %r2, 8
call 113
exit""", about="usdt.bpf.h: a register of pt_regs at a variable offset, read with probe_read_kernel")
acc("helper_probe_read_var_size", """ldxdw %r3, [%r1+112]
ldxdw %r2, [%r1+104]
and %r2, 31
mov %r1, %r10
add %r1, -32
call 112
mov %r0, 0
exit""", about="a size bounded with &= may be zero for *_OR_ZERO")
acc("helper_comm", "mov %r1, %r10\nadd %r1, -16\nmov %r2, 16\ncall 16\nldxdw %r0, [%r10-16]\nexit")
acc("helper_pid_tgid", "call 14\nrsh %r0, 32\nexit")
acc("helper_uid_gid", "call 15\nexit")
acc("helper_ktime", "call 5\nmov %r6, %r0\ncall 125\nsub %r0, %r6\nexit")
acc("helper_prandom", "call 7\nand %r0, 3\nexit")
acc("helper_cpu", "call 8\nexit")
acc("helper_trace_printk", "stw [%r10-8], 0x0a6968\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 4\ncall 6\nexit")
acc("helper_perf_output", "stdw [%r10-8], 7\nlddw %r2, map_idx 0\nlddw %r3, 0xffffffff\nmov %r4, %r10\nadd %r4, -8\nmov %r5, 8\ncall 25\nexit",
    maps=["perf 4 4 2"])
acc("helper_get_stackid", "lddw %r2, map_idx 0\nmov %r3, 256\ncall 27\nexit", maps=["stack_trace 4 1016 64"])
acc("helper_get_stack", "mov %r2, %r10\nadd %r2, -64\nmov %r3, 64\nmov %r4, 256\ncall 67\nexit")
acc("helper_tail_call", "lddw %r2, map_idx 0\nmov %r3, 0\ncall 12\nmov %r0, 0\nexit", maps=["prog_array 4 4 4"])
acc("helper_override_return", "mov %r2, -12\ncall 58\nmov %r0, 0\nexit", opts="override",
    kernel="userspace allows override_return on uprobes")
acc("helper_override_sys_enter", "mov %r2, -13\ncall 58\nmov %r0, 0\nexit", kind="syscall_enter", opts="override",
    kernel="userspace allows override_return on sys_enter")
acc("helper_write_user", "stdw [%r10-8], 0\nldxdw %r1, [%r1+112]\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\ncall 36\nexit",
    opts="write_user", kernel="userspace allows probe_write_user when enabled")
acc("helper_func_ip", "call 173\nexit")
acc("helper_str_len_bounds", """mov %r6, %r1
ldxdw %r3, [%r6+112]
mov %r1, %r10
add %r1, -64
mov %r2, 64
call 114
jsle %r0, 0, out
mov %r1, %r10
add %r1, -64
mov %r2, %r0
mov %r3, %r10
add %r3, -64
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -64
mov %r3, %r0
mov %r4, 0
call 130
out:
mov %r0, 0
exit""", maps=[RINGBUF], about="a *_str return value bounded by its size argument")

acc("alu_const_fold", "mov %r1, 6\nmul %r1, 7\ndiv %r1, 2\nmod %r1, 8\nlsh %r1, 4\nrsh %r1, 2\nxor %r1, 1\nor %r1, 2\nneg %r1\nmov %r0, %r1\nexit")
acc("alu32_wrap", "mov32 %r1, -1\nadd32 %r1, 2\nmov %r0, %r1\nexit")
acc("alu_bswap", "mov %r0, 0x1234\nbe16 %r0\nle32 %r0\nexit")
acc("alu_arsh", "mov %r0, -64\narsh %r0, 3\nexit")
acc("alu_movsx", "mov %r1, 0xff\nmovsx864 %r0, %r1\nexit")
acc("alu_sdiv", "mov %r0, -9\nsdiv %r0, 2\nexit")
acc("dead_branch_skipped", "mov %r1, 5\njgt %r1, 10, bad\nmov %r0, 0\nexit\nbad:\nldxdw %r0, [%r2+0]\nexit",
    about="a branch the constants rule out is never explored")
acc("pointer_null_compare", LOOKUP + "jeq %r0, 0, out\njne %r0, 0, ok\nldxdw %r0, [%r9+0]\nexit\nok:\nmov %r0, 0\nout:\nexit",
    maps=[HASH], about="a checked map value is never NULL, so the second test has one way out")
acc("ptr_diff", "mov %r2, %r10\nadd %r2, -8\nmov %r0, %r10\nsub %r0, %r2\nexit", about="pointer - pointer is a number for root")
acc("atomic_stack", "stdw [%r10-8], 1\nmov %r1, 2\nlock fetch add [%r10-8], %r1\nmov %r0, %r1\nexit")
acc("atomic_xchg_cmpxchg", "stdw [%r10-8], 1\nmov %r1, 2\nlock xchg [%r10-8], %r1\nmov %r0, 2\nmov %r2, 3\nlock cmpxchg [%r10-8], %r2\nexit")
acc("atomic_map_value", LOOKUP + "jeq %r0, 0, out\nmov %r1, 1\nlock add32 [%r0+4], %r1\nout:\nmov %r0, 0\nexit", maps=[HASH])
acc("jset_refine", "ldxdw %r0, [%r1+112]\njset %r0, 0xfffffff0, out\nexit\nout:\nmov %r0, 0\nexit")
acc("many_branches", "\n".join(
    ["ldxdw %r2, [%r1+112]", "mov %r0, 0"] +
    [f"jeq %r2, {i}, l{i}\nadd %r0, 1\nl{i}:" for i in range(30)] + ["exit"]),
    about="30 diamonds: pruning keeps this linear")
acc("ctx_saved_in_r6", "mov %r6, %r1\ncall 5\nldxdw %r0, [%r6+0]\nexit", about="r6 survives a helper call")

# ------------------------------------------------------------- rejected
rej("r0_uninit_exit", "exit", "R0 !read_ok")
for r in range(2, 10):
    rej(f"uninit_r{r}", f"mov %r0, %r{r}\nexit", f"R{r} !read_ok")
rej("uninit_in_branch", "mov %r0, 0\njeq %r0, 1, x\nexit\nx:\nmov %r0, %r3\nexit", "R3 !read_ok",
    about="even on a path the constants rule out? no: r0==1 is dead, so use r1", )
progs["reject"]["uninit_in_branch"] = progs["reject"]["uninit_in_branch"].replace(
    "mov %r0, 0\njeq %r0, 1, x", "ldxdw %r0, [%r1+0]\njeq %r0, 1, x").replace("# even on a path the constants rule out? no: r0==1 is dead, so use r1", "# uninitialised read on one branch only")
rej("r10_write_mov", "mov %r10, 0\nmov %r0, 0\nexit", "frame pointer is read only")
rej("r10_write_add", "add %r10, 8\nmov %r0, 0\nexit", "frame pointer is read only")
rej("r10_write_ldx", "ldxdw %r10, [%r1+0]\nmov %r0, 0\nexit", "frame pointer is read only")
rej("jump_out_of_range", "ja +5\nmov %r0, 0\nexit", "jump out of range")
rej("jump_negative_out", "ja -5\nmov %r0, 0\nexit", "jump out of range")
rej("unreachable", "mov %r0, 0\nexit\nmov %r0, 1\nexit", "unreachable insn 2")
rej("falls_off_end", "mov %r0, 0", "last insn is not an exit or jmp")
rej("infinite_loop_ja", "mov %r0, 0\nl:\nja l", "infinite loop detected")
rej("infinite_loop_cond", "call 7\nl:\nmov %r1, 1\njne %r0, 5, l\nmov %r0, 0\nexit", "infinite loop detected")
rej("unbounded_loop", "call 7\nmov %r1, 0\nl:\nadd %r1, 1\njlt %r1, %r0, l\nmov %r0, 0\nexit", "too large")
rej("bad_register", "mov %r11, 0\nmov %r0, 0\nexit", "R11 is invalid")
rej("lddw_split", "lddw %r0, 5\nexit", "invalid bpf_ld_imm64")
progs["reject"]["lddw_split"] = "# kind: uprobe\n# expect: jump into the middle of ldimm64\nja +1\nlddw %r0, 5\nexit\n"
rej("kfunc_call", "call runtime 5\nexit", "kernel function calls are not supported")
rej("callx", "mov %r2, 0\ncall %r2\nexit", "BPF_CALL uses reserved fields")

# NULL checks
for what, body in [("read", "ldxdw %r0, [%r0+0]"), ("write", "stdw [%r0+0], 1"),
                   ("stx", "mov %r1, 1\nstxdw [%r0+0], %r1"), ("atomic", "mov %r1, 1\nlock add [%r0+0], %r1"),
                   ("narrow", "ldxb %r0, [%r0+3]")]:
    rej(f"null_deref_{what}", LOOKUP + body + "\nmov %r0, 0\nexit", "R0 invalid mem access 'map_value_or_null'",
        maps=[HASH])
rej("null_arith", LOOKUP + "add %r0, 8\nmov %r0, 0\nexit", "pointer arithmetic on map_value_or_null prohibited", maps=[HASH])
rej("null_check_wrong_branch", LOOKUP + "jne %r0, 0, out\nldxdw %r0, [%r0+0]\nexit\nout:\nmov %r0, 0\nexit",
    "R0 invalid mem access 'scalar'", maps=[HASH], about="the == NULL branch sees a NULL scalar")
rej("null_check_other_reg", LOOKUP + "mov %r6, %r0\n" + LOOKUP + "jeq %r0, 0, out\nldxdw %r0, [%r6+0]\nexit\nout:\nmov %r0, 0\nexit",
    "R6 invalid mem access 'map_value_or_null'", maps=[HASH], about="checking one lookup does not cover another")
rej("null_to_helper", LOOKUP + "mov %r2, %r0\nlddw %r1, map_idx 0\ncall 1\nmov %r0, 0\nexit",
    "R2 type=map_value_or_null expected=fp, map_value", maps=[HASH])
rej("null_check_jmp32", LOOKUP + "jeq32 %r0, 0, out\nldxdw %r0, [%r0+0]\nexit\nout:\nmov %r0, 0\nexit",
    "invalid mem access 'map_value_or_null'", maps=[HASH], about="a 32-bit compare is no NULL check")

# map value bounds
for name, body, exp in [
        ("off_past_end", "ldxdw %r0, [%r0+8]", "invalid access to map value, value_size=8 off=8 size=8"),
        ("straddle_end", "ldxw %r0, [%r0+6]", "invalid access to map value, value_size=8 off=6 size=4"),
        ("negative_off", "ldxb %r0, [%r0-1]", "invalid access to map value, value_size=8 off=-1 size=1"),
        ("const_add_past", "add %r0, 16\nldxb %r0, [%r0+0]", "invalid access to map value, value_size=8 off=16"),
        ("write_past", "stdw [%r0+4], 0", "invalid access to map value, value_size=8 off=4 size=8")]:
    rej(f"map_value_{name}", LOOKUP + "jeq %r0, 0, out\n" + body + "\nout:\nmov %r0, 0\nexit", exp, maps=[HASH])
rej("map_value_unbounded_index", "mov %r6, %r1\n" + LOOKUP + "jeq %r0, 0, out\nldxdw %r2, [%r6+112]\nadd %r0, %r2\nldxb %r0, [%r0+0]\nout:\nmov %r0, 0\nexit",
    "R0 min value is negative", maps=["array 4 128 1"])
rej("map_value_unsigned_unbounded", "mov %r6, %r1\n" + LOOKUP + "jeq %r0, 0, out\nldxdw %r2, [%r6+112]\njslt %r2, 0, out\nadd %r0, %r2\nldxb %r0, [%r0+0]\nout:\nmov %r0, 0\nexit",
    "R0 unbounded memory access", maps=["array 4 128 1"])
rej("map_value_off_by_one_bound", "mov %r6, %r1\n" + LOOKUP + "jeq %r0, 0, out\nldxdw %r2, [%r6+112]\njgt %r2, 128, out\nadd %r0, %r2\nldxb %r0, [%r0+0]\nout:\nmov %r0, 0\nexit",
    "invalid access to map value, value_size=128 off=0 size=1", maps=["array 4 128 1"],
    about="index <= 128 lets the byte at 128 be read")
rej("map_value_jmp32_only", "mov %r6, %r1\n" + LOOKUP + "jeq %r0, 0, out\nldxdw %r2, [%r6+112]\njge32 %r2, 16, out\nadd %r0, %r2\nldxb %r0, [%r0+0]\nout:\nmov %r0, 0\nexit",
    "min value is negative", maps=["array 4 128 1"], about="a 32-bit bound says nothing about the upper half")
rej("map_value_scaled_too_far", "mov %r6, %r1\n" + LOOKUP + "jeq %r0, 0, out\nldxdw %r2, [%r6+112]\nand %r2, 15\nlsh %r2, 4\nadd %r0, %r2\nldxdw %r0, [%r0+0]\nout:\nmov %r0, 0\nexit",
    "invalid access to map value, value_size=128", maps=["array 4 128 1"])
rej("rodata_write", "lddw %r1, map_idx_value 0+0\nstdw [%r1+0], 1\nmov %r0, 0\nexit", "write into map forbidden",
    maps=["array 4 8 1 rdonly"])
rej("rodata_atomic", "lddw %r1, map_idx_value 0+0\nmov %r2, 1\nlock add [%r1+0], %r2\nmov %r0, 0\nexit",
    "write into map forbidden", maps=["array 4 8 1 rdonly"])
rej("rodata_helper_write", "lddw %r1, map_idx_value 0+0\nmov %r2, 8\nmov %r3, 0\ncall 112\nmov %r0, 0\nexit",
    "write into map forbidden", maps=["array 4 8 1 rdonly"])
rej("direct_value_off", "lddw %r1, map_idx_value 0+16\nmov %r0, 0\nexit", "direct value offset of 16 is not allowed",
    maps=["array 4 8 1"])
rej("direct_value_hash", "lddw %r1, map_idx_value 0+0\nmov %r0, 0\nexit", "direct value access",
    maps=[HASH], kernel=None)
rej("map_index_range", "lddw %r1, map_idx 3\nmov %r0, 0\nexit", "map index 3 out of range", maps=[HASH])
rej("map_fd_form", "lddw %r1, map_fd 3\nmov %r0, 0\nexit", "unsupported lddw pseudo source")

# stack
rej("stack_below", "stdw [%r10-520], 0\nmov %r0, 0\nexit", "invalid stack off=-520 size=8")
rej("stack_above", "stdw [%r10+0], 0\nmov %r0, 0\nexit", "invalid stack off=0 size=8")
rej("stack_straddle_top", "stw [%r10-2], 0\nmov %r0, 0\nexit", "invalid stack off=-2 size=4")
rej("stack_uninit_read", "ldxdw %r0, [%r10-8]\nexit", "invalid read from stack off -8+0 size 8", kernel="userspace stricter on uninitialised stack")
rej("stack_partly_init", "stw [%r10-8], 0\nldxdw %r0, [%r10-8]\nexit", "invalid read from stack off -8+4 size 8", kernel="userspace stricter on uninitialised stack")
rej("stack_misaligned", "stdw [%r10-12], 0\nmov %r0, 0\nexit", "misaligned stack access off -12 size 8")
rej("stack_uninit_key", "lddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nmov %r0, 0\nexit",
    "invalid indirect read from stack R2 off -4+0 size 4", maps=[HASH], kernel="userspace stricter on uninitialised stack")
rej("stack_key_too_big", "stw [%r10-4], 0\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nmov %r0, 0\nexit",
    "invalid indirect access to stack R2 off=-4 size=16", maps=["hash 16 8 4"])
rej("stack_uninit_value", "stw [%r10-4], 0\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -4\nmov %r3, %r10\nadd %r3, -16\nmov %r4, 0\ncall 2\nexit",
    "invalid indirect read from stack R3", maps=[HASH], kernel="userspace stricter on uninitialised stack")
rej("stack_variable_off", "ldxdw %r2, [%r1+112]\nand %r2, 7\nmov %r3, %r10\nadd %r3, -16\nadd %r3, %r2\nstb [%r3+0], 0\nmov %r0, 0\nexit",
    "variable stack access prohibited", kernel="userspace stricter on variable stack access")
rej("stack_ptr_fill_narrow", "stxdw [%r10-8], %r1\nldxw %r0, [%r10-8]\nexit", "invalid size of register fill")
rej("stack_helper_overflow", "mov %r1, %r10\nadd %r1, -8\nmov %r2, 16\nmov %r3, 0\ncall 112\nmov %r0, 0\nexit",
    "invalid indirect access to stack R1 off=-8 size=16")
rej("stack_spill_callee_ptr", "mov %r1, %r10\nadd %r1, -8\ncall local f\nmov %r0, 0\nexit\nf:\nmov %r2, %r10\nadd %r2, -8\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit",
    "cannot spill pointers to stack into stack frame of the caller")

# ctx
rej("ctx_past_end", "ldxdw %r0, [%r1+168]\nexit", "invalid bpf_context access off=168 size=8")
rej("ctx_straddle_end", "ldxdw %r0, [%r1+164]\nexit", "invalid bpf_context access off=164 size=8")
rej("ctx_negative", "ldxdw %r0, [%r1-8]\nexit", "invalid bpf_context access off=-8 size=8")
rej("ctx_misaligned", "ldxdw %r0, [%r1+4]\nexit", "invalid bpf_context access off=4 size=8")
rej("ctx_write", "stdw [%r1+80], 0\nmov %r0, 0\nexit", "invalid bpf_context access off=80 size=8")
rej("ctx_write_stx", "mov %r2, 1\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit", "the context is read-only")
rej("ctx_write_uretprobe", "stdw [%r1+80], 0\nmov %r0, 0\nexit", "the context is read-only", kind="uretprobe")
rej("ctx_modified", "add %r1, 16\nldxdw %r0, [%r1+8]\nexit", "dereference of modified ctx ptr R1 off=16",
    about="ctx fields are read through the unmodified pointer, as in the kernel")
rej("ctx_variable", "ldxdw %r2, [%r1+112]\nand %r2, 8\nadd %r1, %r2\nldxdw %r0, [%r1+0]\nexit", "variable ctx access")
rej("ctx_atomic", "mov %r2, 1\nlock add [%r1+0], %r2\nmov %r0, 0\nexit", "BPF_ATOMIC stores into R1 ctx is not allowed")
rej("ctx_tp_common", "ldxdw %r0, [%r1+0]\nexit", "invalid bpf_context access off=0 size=8", kind="syscall_enter")
rej("ctx_tp_past_args", "ldxdw %r0, [%r1+64]\nexit", "invalid bpf_context access off=64 size=8", kind="syscall_enter",
    kernel="kernel checks tracepoint context bounds at attach")
rej("ctx_tp_exit_past_ret", "ldxdw %r0, [%r1+24]\nexit", "invalid bpf_context access off=24 size=8", kind="syscall_exit",
    kernel="kernel checks tracepoint context bounds at attach")
rej("ctx_tp_write", "stdw [%r1+16], 0\nmov %r0, 0\nexit", "invalid bpf_context access", kind="syscall_enter")
rej("ctx_raw_tp_past", "ldxdw %r0, [%r1+16]\nexit", "invalid bpf_context access off=16 size=8", kind="raw_tp",
    kernel="kernel checks tracepoint context bounds at attach")
rej("ctx_deref_scalar", "ldxdw %r1, [%r1+112]\nldxdw %r0, [%r1+0]\nexit", "R1 invalid mem access 'scalar'",
    about="a register value read from pt_regs is a number, not a pointer")

# ring buffer records
RB_RES = "lddw %r1, map_idx 0\nmov %r2, 16\nmov %r3, 0\ncall 131\n"
rej("ringbuf_leak", RB_RES + "jeq %r0, 0, out\nstdw [%r0+0], 1\nout:\nmov %r0, 0\nexit", "Unreleased reference", maps=[RINGBUF])
rej("ringbuf_leak_one_path", "mov %r6, %r1\n" + RB_RES + """jeq %r0, 0, out
ldxdw %r1, [%r6+112]
jeq %r1, 0, out
mov %r1, %r0
mov %r2, 0
call 132
out:
mov %r0, 0
exit""", "Unreleased reference", maps=[RINGBUF])
rej("ringbuf_use_after_submit", RB_RES + "jeq %r0, 0, out\nmov %r6, %r0\nmov %r1, %r0\nmov %r2, 0\ncall 132\nstdw [%r6+0], 1\nout:\nmov %r0, 0\nexit",
    "R6 invalid mem access 'scalar'", maps=[RINGBUF])
rej("ringbuf_double_submit", RB_RES + "jeq %r0, 0, out\nmov %r6, %r0\nmov %r1, %r0\nmov %r2, 0\ncall 132\nmov %r1, %r6\nmov %r2, 0\ncall 132\nout:\nmov %r0, 0\nexit",
    "R1 type=scalar expected=ringbuf_mem", maps=[RINGBUF])
rej("ringbuf_submit_unchecked", RB_RES + "mov %r1, %r0\nmov %r2, 0\ncall 132\nmov %r0, 0\nexit",
    "R1 type=ringbuf_mem_or_null expected=ringbuf_mem", maps=[RINGBUF])
rej("ringbuf_deref_unchecked", RB_RES + "stdw [%r0+0], 1\nmov %r0, 0\nexit", "R0 invalid mem access 'ringbuf_mem_or_null'", maps=[RINGBUF])
rej("ringbuf_past_record", RB_RES + "jeq %r0, 0, out\nstdw [%r0+16], 1\nmov %r1, %r0\nmov %r2, 0\ncall 132\nout:\nmov %r0, 0\nexit",
    "invalid access to memory, mem_size=16 off=16 size=8", maps=[RINGBUF])
rej("ringbuf_submit_offset", RB_RES + "jeq %r0, 0, out\nmov %r1, %r0\nadd %r1, 8\nmov %r2, 0\ncall 132\nout:\nmov %r0, 0\nexit",
    "must have zero offset when passed to release func", maps=[RINGBUF])
rej("ringbuf_var_size", "ldxdw %r2, [%r1+112]\nand %r2, 63\nlddw %r1, map_idx 0\nmov %r3, 0\ncall 131\nmov %r0, 0\nexit",
    "R2 is not a known constant", maps=[RINGBUF])
rej("ringbuf_lookup", "stw [%r10-4], 0\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nmov %r0, 0\nexit",
    "cannot pass map_type 27 into func bpf_map_lookup_elem#1", maps=[RINGBUF])
rej("ringbuf_tail_call_leak", "mov %r6, %r1\n" + RB_RES + "jeq %r0, 0, out\nmov %r7, %r0\nmov %r1, %r6\nlddw %r2, map_idx 1\nmov %r3, 0\ncall 12\nmov %r1, %r7\nmov %r2, 0\ncall 133\nout:\nmov %r0, 0\nexit",
    "tail_call would lead to reference leak", maps=[RINGBUF, "prog_array 4 4 4"])

# helpers
rej("helper_unknown", "call 200\nexit", "invalid func unknown#200")
rej("helper_kernel_only", "call 26\nexit", "invalid func unknown#26", kernel=None,
    about="bpf_get_current_task has no meaning in a target")
rej("helper_r1_not_map", "mov %r1, 0\nmov %r2, %r10\ncall 1\nmov %r0, 0\nexit", "R1 type=scalar expected=map_ptr")
rej("helper_key_scalar", "lddw %r1, map_idx 0\nmov %r2, 0\ncall 1\nmov %r0, 0\nexit", "R2 type=scalar expected=fp, map_value", maps=[HASH])
rej("helper_key_uninit_reg", "lddw %r1, map_idx 0\ncall 1\nmov %r0, 0\nexit", "R2 !read_ok", maps=[HASH])
rej("helper_ctx_expected", "mov %r1, %r10\nmov %r2, -12\ncall 58\nmov %r0, 0\nexit", "R1 type=fp expected=ctx", opts="override")
rej("helper_ctx_modified", "add %r1, 8\nlddw %r2, map_idx 0\nmov %r3, 0\ncall 27\nexit", "dereference of modified ctx ptr R1 off=8",
    maps=["stack_trace 4 1016 64"])
rej("helper_write_user_off", "stdw [%r10-8], 0\nldxdw %r1, [%r1+112]\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\ncall 36\nexit",
    "cannot use helper bpf_probe_write_user", kernel=None)
rej("helper_override_uretprobe", "mov %r2, -12\ncall 58\nmov %r0, 0\nexit", "cannot use helper bpf_override_return",
    kind="uretprobe", opts="override")
rej("helper_override_off", "mov %r2, -12\ncall 58\nmov %r0, 0\nexit", "cannot use helper bpf_override_return")
rej("helper_override_tp", "mov %r2, -12\ncall 58\nmov %r0, 0\nexit", "cannot use helper bpf_override_return",
    kind="syscall_exit", opts="override")
rej("helper_zero_size", "mov %r1, %r10\nadd %r1, -16\nmov %r2, 0\ncall 16\nexit", "invalid zero-sized read")
rej("helper_negative_size", "ldxdw %r2, [%r1+112]\nmov %r1, %r10\nadd %r1, -16\nmov %r3, 0\ncall 112\nexit",
    "R2 min value is negative")
rej("helper_unbounded_size", "ldxdw %r2, [%r1+112]\njslt %r2, 0, out\nmov %r1, %r10\nadd %r1, -16\nmov %r3, 0\ncall 112\nout:\nmov %r0, 0\nexit",
    "R2 unbounded memory access")
rej("helper_size_past_buf", "ldxdw %r2, [%r1+112]\nand %r2, 31\nmov %r1, %r10\nadd %r1, -16\nmov %r3, 0\ncall 112\nmov %r0, 0\nexit",
    "invalid indirect access to stack R1 off=-16 size=31")
rej("helper_mem_uninit", "mov %r1, 0\nlddw %r2, map_idx 0\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 8\nmov %r5, 0\ncall 130\nexit",
    "R1 type=scalar expected=map_ptr", maps=[RINGBUF])
rej("helper_output_uninit", "lddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130\nexit",
    "invalid indirect read from stack R2 off -8+0 size 8", maps=[RINGBUF], kernel="userspace stricter on uninitialised stack")
rej("helper_perf_wrong_map", "stdw [%r10-8], 7\nlddw %r2, map_idx 0\nmov %r3, 0\nmov %r4, %r10\nadd %r4, -8\nmov %r5, 8\ncall 25\nexit",
    "cannot pass map_type 1 into func bpf_perf_event_output#25", maps=[HASH])
rej("helper_push_on_hash", "stdw [%r10-8], 7\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 0\ncall 87\nexit",
    "cannot pass map_type 1 into func bpf_map_push_elem#87", maps=[HASH])
rej("helper_delete_clobbered_key", "stw [%r10-4], 0\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -4\ncall 5\ncall 3\nexit",
    "R1 !read_ok", maps=[ARRAY], about="a helper call clobbers r1-r5: the map pointer is gone")
rej("helper_tail_call_map", "lddw %r2, map_idx 0\nmov %r3, 0\ncall 12\nmov %r0, 0\nexit",
    "cannot pass map_type 1 into func bpf_tail_call#12", maps=[HASH])
rej("helper_clobbers_r1", "call 5\nmov %r0, %r1\nexit", "R1 !read_ok")
rej("helper_clobbers_r5", "mov %r5, 1\ncall 5\nmov %r0, %r5\nexit", "R5 !read_ok")
rej("helper_printk_uninit", "mov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 6\nexit", "invalid indirect read from stack", kernel="userspace stricter on uninitialised stack")
rej("helper_comm_to_ctx", "mov %r2, 16\ncall 16\nexit", "R1 type=ctx expected=fp, map_value, ringbuf_mem")

# pointer arithmetic
rej("ptr_arith_map_ptr", "lddw %r1, map_idx 0\nadd %r1, 8\nmov %r0, 0\nexit", "pointer arithmetic on map_ptr prohibited", maps=[HASH])
rej("ptr_arith_32bit", "mov %r2, %r10\nadd32 %r2, -8\nmov %r0, 0\nexit", "32-bit pointer arithmetic prohibited")
rej("ptr_bitwise_and", "mov %r2, %r10\nand %r2, -8\nmov %r0, 0\nexit", "bitwise operator &= on pointer prohibited")
rej("ptr_mul", "mov %r2, %r10\nmul %r2, 2\nmov %r0, 0\nexit", "pointer arithmetic with *= operator prohibited")
rej("ptr_plus_ptr", "mov %r2, %r10\nadd %r2, %r1\nmov %r0, 0\nexit", "pointer += pointer prohibited")
rej("ptr_neg", "mov %r2, %r10\nneg %r2\nmov %r0, 0\nexit", "pointer arithmetic with neg operator prohibited",
    kernel="userspace stricter on pointer leaks")
rej("ptr_scalar_minus_ptr", "mov %r2, 8\nsub %r2, %r10\nmov %r0, 0\nexit", "pointer arithmetic with -= operator prohibited")
rej("ptr_out_of_bounds_const", "mov %r2, %r10\nlddw %r3, 0x40000000\nadd %r2, %r3\nmov %r0, 0\nexit", "makes fp pointer be out of bounds")
rej("scalar_deref", "mov %r1, 4096\nldxdw %r0, [%r1+0]\nexit", "R1 invalid mem access 'scalar'")
rej("map_ptr_deref", "lddw %r1, map_idx 0\nldxdw %r0, [%r1+0]\nexit", "R1 invalid mem access 'map_ptr'", maps=[HASH],
    kernel="kernel-only map pointer access")
rej("ptr_leak_atomic", "stdw [%r10-8], 0\nmov %r1, %r10\nlock add [%r10-8], %r1\nmov %r0, 0\nexit", "leaks addr into mem",
    kernel="userspace stricter on pointer leaks")

# calls
rej("call_too_deep", "\n".join(["call local f1\nexit"] + [f"f{i}:\ncall local f{i + 1}\nexit" for i in range(1, 8)] +
                               ["f8:\nmov %r0, 0\nexit"]), "the call stack of 9 frames is too deep")
rej("call_recursive", "call local f\nexit\nf:\ncall local f\nexit", "recursive call")
rej("call_stack_too_big", "stdw [%r10-512], 0\ncall local f\nexit\nf:\nstdw [%r10-8], 0\nmov %r0, 0\nexit",
    "combined stack size of the call chain is 544", kernel="kernel private stacks lift the combined stack limit")
rej("call_returns_stack_ptr", "call local f\nmov %r0, 0\nexit\nf:\nmov %r0, %r10\nadd %r0, -8\nexit",
    "cannot return stack pointer to the caller")
rej("call_clobbers_r1", "mov %r1, 1\ncall local f\nmov %r0, %r1\nexit\nf:\nmov %r0, 0\nexit", "R1 !read_ok")
rej("call_callee_uninit_r6", "mov %r6, 1\ncall local f\nexit\nf:\nmov %r0, %r6\nexit", "R6 !read_ok")
rej("call_bad_target", "call local +10\nmov %r0, 0\nexit", "call to invalid destination")
rej("call_callee_r0_uninit", "call local f\nexit\nf:\nexit", "R0 !read_ok")
rej("call_jump_across", "call local f\nja f\nf:\nmov %r0, 0\nexit", "jump out of range")
progs["reject"]["call_jump_across"] = "# kind: uprobe\n# expect: jump out of range\nmov %r0, 0\ncall local f\njeq %r0, 0, g\nexit\nf:\ng:\nmov %r0, 0\nexit\n"

for d in progs:
    os.makedirs(os.path.join(HERE, d), exist_ok=True)
    for name, text in progs[d].items():
        with open(os.path.join(HERE, d, name + ".s"), "w") as f:
            f.write(text)
print({d: len(progs[d]) for d in progs})
