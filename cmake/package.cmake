# What `cmake --install` adds beside the targets (whose rules sit with the
# targets): the Python client, the systemd unit, man pages, bash completion
# and docs; then `cpack -G DEB`.
#
# The Python directory and the unit's ExecStart depend on the prefix, which
# is only known at install time (cpack installs into /usr whatever the
# build was configured with), so both are worked out then.

# Debian's python3 reads /usr/lib/python3/dist-packages for packages and
# /usr/local/lib/python3.X/dist-packages for local installs; another prefix
# needs PYTHONPATH (or -DBPFGRAFT_PYTHON_DIR=DIR, relative to the prefix).
set(BPFGRAFT_PYTHON_DIR "" CACHE STRING "where bpfgraft_client.py goes (default: Debian's python3 path for the prefix)")
execute_process(COMMAND ${BPFGRAFT_PYTHON3} -c "import sys; print('%d.%d' % sys.version_info[:2])"
  OUTPUT_VARIABLE python_version OUTPUT_STRIP_TRAILING_WHITESPACE)
install(CODE "
  set(BPFGRAFT_PYTHON_DIR \"${BPFGRAFT_PYTHON_DIR}\")
  if(NOT BPFGRAFT_PYTHON_DIR AND CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(BPFGRAFT_PYTHON_DIR lib/python3/dist-packages)
  elseif(NOT BPFGRAFT_PYTHON_DIR)
    set(BPFGRAFT_PYTHON_DIR lib/python${python_version}/dist-packages)
  endif()")
install(FILES scripts/bpfgraft_client.py DESTINATION "\${BPFGRAFT_PYTHON_DIR}")
install(PROGRAMS scripts/mapdump.py DESTINATION ${BPFGRAFT_INSTALL_DATADIR})

# The unit in the repository names /usr/local/bin/bpfgraftd; the installed
# one names the installed bpfgraftd (systemd also reads ${prefix}/lib/systemd).
set(unit_dir lib/systemd/system)
install(FILES scripts/bpfgraftd.service DESTINATION ${unit_dir})
install(CODE "
  set(unit \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${unit_dir}/bpfgraftd.service\")
  file(READ \"\${unit}\" text)
  string(REPLACE \"/usr/local/bin/bpfgraftd\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/bpfgraftd\" text \"\${text}\")
  file(WRITE \"\${unit}\" \"\${text}\")")

install(FILES doc/man/bpfgraft.8 doc/man/bpfgraftd.8 doc/man/bpfgraft-exporter.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES scripts/bpfgraft-completion.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
  RENAME bpfgraft)
install(FILES README.md LICENSE proto/PROTOCOL.md maps/FORMAT.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# cpack -G DEB (from the build directory): bpfgraft_VERSION_amd64.deb.
# Depends comes from the binaries' libraries (dpkg-shlibdeps) plus what the
# Python client imports. cpack installs with CMAKE_INSTALL_PREFIX=/usr and
# DESTDIR set to its staging directory.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME bpfgraft)
set(CPACK_PACKAGE_VENDOR bpfgraft)
set(CPACK_PACKAGE_CONTACT "bpfgraft maintainers <bpfgraft@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "userspace eBPF runtime: eBPF programs attached to running processes")
set(CPACK_PACKAGE_DESCRIPTION "bpfgraft attaches standard eBPF programs (clang -target bpf, libbpf, \
BTF maps) to running processes without a restart, LD_PRELOAD or kernel BPF, and runs unmodified \
libbpf tools with their BPF side in userspace. Includes bpfgraftd, the bpfgraft CLI, the Python \
client, the benchmarks and the sample programs.")
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES OFF)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3, python3-msgpack")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libbpf-tools")
include(CPack)
