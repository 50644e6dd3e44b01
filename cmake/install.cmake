# Where `cmake --install` puts things (GNUInstallDirs), and the same places
# as seen from bindir: installed binaries find their files from
# /proc/self/exe, so an install works under any prefix, DESTDIR or package
# without the build tree.
include(GNUInstallDirs)
set(BPFGRAFT_INSTALL_PKGLIBDIR ${CMAKE_INSTALL_LIBDIR}/bpfgraft)          # the payload
set(BPFGRAFT_INSTALL_LIBEXECDIR ${CMAKE_INSTALL_LIBEXECDIR}/bpfgraft)    # victim programs
set(BPFGRAFT_INSTALL_DATADIR ${CMAKE_INSTALL_DATADIR}/bpfgraft)          # samples/, bench/

# bpfgraft_path_from_bindir(VAR DIR): DIR (relative to the prefix) relative
# to the installed bindir, e.g. "../lib/bpfgraft".
function(bpfgraft_path_from_bindir var dir)
  file(RELATIVE_PATH rel ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_PREFIX}/${dir})
  set(${var} ${rel} PARENT_SCOPE)
endfunction()

# The distribution's python3 carries python3-msgpack (a pyenv one may not).
find_program(BPFGRAFT_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT BPFGRAFT_PYTHON3)
  find_program(BPFGRAFT_PYTHON3 NAMES python3 REQUIRED)
endif()
