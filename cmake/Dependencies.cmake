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

# VTK meshes label maps (predict --surfaces, surfaces) and draws render's 3D view off-screen through an X display
# (docs/cli.md §3.7). Only the modules we use; ITK is built without its VTK glue, so images cross by hand.
find_package(VTK 9.1 COMPONENTS CommonCore CommonDataModel CommonMath CommonTransforms FiltersCore FiltersGeneral
             FiltersSources IOXML IOGeometry RenderingCore RenderingOpenGL2)
if(NOT VTK_FOUND)
  message(FATAL_ERROR "VTK not found: install libvtk9-dev (make deps does)")
endif()
# zlib checks the compressed voxel data of MetaImage files before ITK reads them (its reader ignores a corrupt stream).
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto) # libcrypto: SHA-256 of provenance records, base64 of the batch report
find_package(X11 REQUIRED) # render opens the display itself, to fall back on Xvfb rather than let VTK abort
add_library(repmode_vtk_mesh INTERFACE)
target_link_libraries(repmode_vtk_mesh INTERFACE VTK::CommonCore VTK::CommonDataModel VTK::CommonMath
                      VTK::CommonTransforms VTK::FiltersCore VTK::FiltersGeneral VTK::IOXML VTK::IOGeometry)

if(REPMODE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
