# Fuzzes one target for a bounded time: cmake -DFUZZER=bin -DCORPUS=dir
# -DWORK_DIR=dir -DSECONDS=n -P run_fuzzer.cmake. New inputs go to a fresh
# copy of the seed corpus in WORK_DIR, crashes to WORK_DIR/artifacts: the
# kept corpus in the source tree is only read.
foreach(var FUZZER CORPUS WORK_DIR SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake needs -D${var}=...")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/corpus ${WORK_DIR}/artifacts)
file(GLOB seeds ${CORPUS}/*)
file(COPY ${seeds} DESTINATION ${WORK_DIR}/corpus)
execute_process(
  COMMAND ${FUZZER} ${WORK_DIR}/corpus
          -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10 -max_len=4096
          -print_final_stats=1 -artifact_prefix=${WORK_DIR}/artifacts/
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  file(GLOB artifacts ${WORK_DIR}/artifacts/*)
  message(FATAL_ERROR "fuzzing ${FUZZER} failed (${result}); reproduce with: ${FUZZER} ${artifacts}")
endif()
