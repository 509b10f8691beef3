# The module against an installed ITK, which lacks ITK's module macros (ITKModuleExternal and what it includes):
# the few the module uses, with the same meaning, so that itk-module.cmake, src/ and test/ serve both builds.

# itk-module.cmake's declaration: the module's name and what it and its tests depend on.
macro(itk_module name)
  cmake_parse_arguments(_rm "EXCLUDE_FROM_DEFAULT;ENABLE_SHARED" "DESCRIPTION"
                        "DEPENDS;COMPILE_DEPENDS;PRIVATE_DEPENDS;TEST_DEPENDS" ${ARGN})
  set(itk-module ${name})
  set(ITK_MODULE_${name}_DEPENDS ${_rm_DEPENDS} ${_rm_COMPILE_DEPENDS} ${_rm_PRIVATE_DEPENDS})
  set(ITK_MODULE_${name}-Test_DEPENDS ${_rm_TEST_DEPENDS})
endmacro()

# test/CMakeLists.txt's first call: the libraries a test driver links (the module's and its test dependencies').
macro(itk_module_test)
  set(${itk-module}-Test_LIBRARIES ${itk-module})
  foreach(dep IN LISTS ITK_MODULE_${itk-module}-Test_DEPENDS)
    list(APPEND ${itk-module}-Test_LIBRARIES ${${dep}_LIBRARIES})
  endforeach()
endmacro()

# One executable runs every test function by name, through ITK's test driver (its argument handling, --compare).
macro(CreateTestDriver KIT KIT_LIBS KitTests)
  set(CMAKE_TESTDRIVER_BEFORE_TESTMAIN "#include \"itkTestDriverBeforeTest.inc\"")
  set(CMAKE_TESTDRIVER_AFTER_TESTMAIN "#include \"itkTestDriverAfterTest.inc\"")
  create_test_sourcelist(_rm_tests ${KIT}TestDriver.cxx ${KitTests}
                         EXTRA_INCLUDE itkTestDriverIncludeRequiredIOFactories.h
                         FUNCTION ProcessArgumentsAndRegisterRequiredFactories)
  add_executable(${KIT}TestDriver ${_rm_tests} ${ARGN})
  target_link_libraries(${KIT}TestDriver PRIVATE ${KIT_LIBS})
endmacro()

function(itk_add_test)
  add_test(${ARGN})
  set_property(TEST ${ARGV1} PROPERTY LABELS ${itk-module})
endfunction()

include(${CMAKE_CURRENT_SOURCE_DIR}/itk-module.cmake)
option(BUILD_TESTING "Build the module's tests" OFF)
set(_rm_components ${ITK_MODULE_${itk-module}_DEPENDS})
if(BUILD_TESTING)
  list(APPEND _rm_components ${ITK_MODULE_${itk-module}-Test_DEPENDS})
endif()
find_package(ITK REQUIRED COMPONENTS ${_rm_components})

add_subdirectory(src)
add_library(${itk-module} INTERFACE)
target_include_directories(${itk-module} INTERFACE ${${itk-module}_INCLUDE_DIRS})
target_include_directories(${itk-module} SYSTEM INTERFACE ${ITK_INCLUDE_DIRS})
target_link_libraries(${itk-module} INTERFACE ${${itk-module}_LIBRARIES})
if(BUILD_TESTING)
  enable_testing()
  add_subdirectory(test)
endif()
