# Third-party libraries, all from Debian 12's packages (tools/install-deps.sh installs them).

# The C core's own: OpenMP, OpenBLAS, cJSON (the ITK module of plugin/itk builds the core with them too).
include(${CMAKE_CURRENT_LIST_DIR}/CoreDependencies.cmake)

# ITK reads and writes the images and hosts the filters. Only the modules we use (about 20 libraries instead of
# 129, and no FFTW); the IO factories are registered by hand, so ITK's generated registration headers (UseITK) are
# not needed.
find_package(ITK 5.2 COMPONENTS ITKCommon ITKIOImageBase ITKIONRRD ITKIONIFTI ITKIOMeta ITKIOTIFF ITKIOPNG
             ITKThresholding ITKImageCompose ITKImageGrid ITKImageIntensity ITKImageStatistics)
if(NOT ITK_FOUND)
  message(FATAL_ERROR "ITK not found: install libinsighttoolkit5-dev (make deps does)")
endif()
add_library(repmode_itk_libraries INTERFACE)
target_link_libraries(repmode_itk_libraries INTERFACE ${ITK_LIBRARIES})
target_include_directories(repmode_itk_libraries SYSTEM INTERFACE ${ITK_INCLUDE_DIRS})

if(REPMODE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
