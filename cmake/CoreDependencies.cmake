# What the C core (core/) links, all from Debian 12's packages (tools/install-deps.sh installs them).

find_package(OpenMP REQUIRED COMPONENTS C)

# OpenBLAS, the OpenMP build in particular: called inside our own parallel regions it runs on the calling thread,
# so the core decides how work is split and results do not depend on the thread count. Debian installs the
# variants side by side; we name this one's directory rather than trust the alternatives symlink.
set(_repmode_openblas_dir /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
find_library(OPENBLAS_OPENMP_LIBRARY NAMES openblas PATHS ${_repmode_openblas_dir} NO_DEFAULT_PATH)
find_path(OPENBLAS_OPENMP_INCLUDE_DIR NAMES cblas.h
          PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
if(NOT OPENBLAS_OPENMP_LIBRARY OR NOT OPENBLAS_OPENMP_INCLUDE_DIR)
  message(FATAL_ERROR "OpenBLAS (OpenMP build) not found: install libopenblas-openmp-dev (make deps does)")
endif()
add_library(repmode_openblas INTERFACE)
target_link_libraries(repmode_openblas INTERFACE ${OPENBLAS_OPENMP_LIBRARY})
target_include_directories(repmode_openblas SYSTEM INTERFACE ${OPENBLAS_OPENMP_INCLUDE_DIR})

# cJSON parses and prints the JSON headers of safetensors model files.
find_library(CJSON_LIBRARY NAMES cjson)
find_path(CJSON_INCLUDE_DIR NAMES cjson/cJSON.h)
if(NOT CJSON_LIBRARY OR NOT CJSON_INCLUDE_DIR)
  message(FATAL_ERROR "cJSON not found: install libcjson-dev (make deps does)")
endif()
add_library(repmode_cjson INTERFACE)
target_link_libraries(repmode_cjson INTERFACE ${CJSON_LIBRARY})
target_include_directories(repmode_cjson SYSTEM INTERFACE ${CJSON_INCLUDE_DIR})
