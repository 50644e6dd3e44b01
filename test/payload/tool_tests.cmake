# Tool mode's pure parts (payload/tool_core.c), built hosted: no payload,
# no injector, no root. Included from test/payload/CMakeLists.txt.
foreach(t perf fdt)
  bpfgraft_test(test_payload_tool_${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tool_${t}.c
    ${CMAKE_SOURCE_DIR}/payload/tool_core.c SANITIZED)
  foreach(exe test_payload_tool_${t} test_payload_tool_${t}-asan)
    if(TARGET ${exe})
      target_include_directories(${exe} PRIVATE ${CMAKE_SOURCE_DIR}/payload)
      target_link_libraries(${exe} PRIVATE pthread)
    endif()
  endforeach()
endforeach()
