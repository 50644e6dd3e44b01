# BPF objects compiled with clang for tests and samples.
#
# bpfgraft_bpf_object(TARGET_NAME SOURCE) compiles SOURCE (a *.bpf.c) with
# `clang -O2 -g -target bpf` into ${CMAKE_BINARY_DIR}/bpf/<name>.bpf.o, where
# <name> is SOURCE's file name without .bpf.c, and adds a custom target
# TARGET_NAME building it. vmlinux.h comes from the running kernel's BTF
# (bpftool), generated once per build tree in ${BPFGRAFT_BPF_GEN_DIR}.

find_program(BPFGRAFT_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFGRAFT_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

set(BPFGRAFT_BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf/include)
set(BPFGRAFT_BPF_OUT_DIR ${CMAKE_BINARY_DIR}/bpf)
set(BPFGRAFT_VMLINUX_H ${BPFGRAFT_BPF_GEN_DIR}/vmlinux.h)

# Written to a temporary name first so an interrupted dump never leaves a
# truncated vmlinux.h that looks up to date.
add_custom_command(
  OUTPUT ${BPFGRAFT_VMLINUX_H}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${BPFGRAFT_BPF_GEN_DIR}
  COMMAND sh -c "${BPFGRAFT_BPFTOOL} btf dump file /sys/kernel/btf/vmlinux format c > ${BPFGRAFT_VMLINUX_H}.tmp"
  COMMAND ${CMAKE_COMMAND} -E rename ${BPFGRAFT_VMLINUX_H}.tmp ${BPFGRAFT_VMLINUX_H}
  COMMENT "Generating vmlinux.h from the running kernel's BTF"
  VERBATIM)
if(NOT TARGET bpfgraft_vmlinux_h)
  add_custom_target(bpfgraft_vmlinux_h DEPENDS ${BPFGRAFT_VMLINUX_H})
endif()

# <asm/...> headers (usdt.bpf.h's <linux/errno.h>) live in the multiarch
# folder, which clang -target bpf does not search.
if(CMAKE_LIBRARY_ARCHITECTURE)
  set(BPFGRAFT_BPF_ARCH_INCLUDE -idirafter /usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
endif()

function(bpfgraft_bpf_object target source)
  get_filename_component(src ${source} ABSOLUTE)
  get_filename_component(fname ${src} NAME)
  string(REGEX REPLACE "\\.bpf\\.c$" "" name ${fname})
  set(out ${BPFGRAFT_BPF_OUT_DIR}/${name}.bpf.o)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${BPFGRAFT_BPF_OUT_DIR}
    COMMAND ${BPFGRAFT_CLANG} -O2 -g -target bpf -D__TARGET_ARCH_x86
            -I${BPFGRAFT_BPF_GEN_DIR} -Wall -Werror -Wno-unused-function
            ${BPFGRAFT_BPF_ARCH_INCLUDE}
            -c ${src} -o ${out}
    DEPENDS ${src} ${BPFGRAFT_VMLINUX_H}
    IMPLICIT_DEPENDS C ${src}
    COMMENT "Compiling BPF object ${name}.bpf.o"
    VERBATIM)
  add_custom_target(${target} ALL DEPENDS ${out})
  add_dependencies(${target} bpfgraft_vmlinux_h)
  set_property(TARGET ${target} PROPERTY BPF_OBJECT ${out})
endfunction()
