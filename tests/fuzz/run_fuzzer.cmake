# Runs one fuzzer for a fixed number of inputs: starts from an empty scratch folder (where
# libFuzzer writes the inputs it finds) and the read-only checked-in corpus.
#   cmake -DFUZZER=path -DSCRATCH=dir -DCORPUS=dir -DFLAGS="a;b" -P run_fuzzer.cmake
foreach(var FUZZER SCRATCH CORPUS FLAGS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: ${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE ${SCRATCH})
file(MAKE_DIRECTORY ${SCRATCH})
execute_process(COMMAND ${FUZZER} ${FLAGS} ${SCRATCH} ${CORPUS} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzzer ${FUZZER} failed (${rc}); see the artifact path above")
endif()
