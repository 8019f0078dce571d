# Check that README.md contains examples/quickstart.cpp verbatim as a ```cpp code block, so the
# README's C++ quick start is exactly the program the consumer tests compile and run.
#   cmake -DREADME=README.md -DQUICKSTART=examples/quickstart.cpp -P check_readme.cmake
cmake_minimum_required(VERSION 3.20)
file(READ "${README}" readme)
file(READ "${QUICKSTART}" code)
string(FIND "${readme}" "```cpp\n${code}```" at)
if(at EQUAL -1)
  message(FATAL_ERROR "README.md has no ```cpp block identical to ${QUICKSTART}; copy the file into "
                      "the README's C++ quick start verbatim")
endif()
message(STATUS "README C++ quick start matches ${QUICKSTART}")
