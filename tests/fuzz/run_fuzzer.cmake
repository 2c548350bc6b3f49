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
# Without address randomisation where the kernel lets us turn it off (setarch -R), so the
# same seed gives the same run on every machine.
set(launcher)
find_program(SETARCH setarch)
if(SETARCH)
  execute_process(COMMAND ${SETARCH} -R true RESULT_VARIABLE setarch_rc OUTPUT_QUIET ERROR_QUIET)
  if(setarch_rc EQUAL 0)
    set(launcher ${SETARCH} -R)
  endif()
endif()
if(NOT launcher)
  message(STATUS "setarch -R is not available: addresses are randomised, runs may differ")
endif()
execute_process(COMMAND ${launcher} ${FUZZER} ${FLAGS} ${SCRATCH} ${CORPUS} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzzer ${FUZZER} failed (${rc}); see the artifact path above")
endif()
