# cmake --install: the public headers (include/repmode/ and the ITK filters' include/itkRepMode*.h/.hxx, in the
# source tree's layout so that code builds the same against the tree or an installation), librepmode.so and
# librepmode.a, the CMake package (find_package(repmode): repmode::repmode, repmode::repmode_static) and repmode.pc.
# Both package files find the installation relative to themselves, so a prefix can be moved.
include(CMakePackageConfigHelpers)

set(REPMODE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/repmode)

install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT repmode_Development
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hxx")

# The static library's consumers link OpenBLAS and cJSON too: exported as repmode::openblas and repmode::cjson, with
# the paths found here (the OpenMP build of OpenBLAS in particular, not whichever the alternatives point to).
set_target_properties(repmode_openblas PROPERTIES EXPORT_NAME openblas)
set_target_properties(repmode_cjson PROPERTIES EXPORT_NAME cjson)
install(TARGETS repmode_openblas repmode_cjson EXPORT repmodeTargets)
install(TARGETS repmode_shared repmode EXPORT repmodeTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT repmode_Runtime NAMELINK_COMPONENT repmode_Development
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT repmode_Development
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT repmodeTargets NAMESPACE repmode:: DESTINATION ${REPMODE_INSTALL_CMAKEDIR}
        COMPONENT repmode_Development)

configure_package_config_file(cmake/repmodeConfig.cmake.in ${PROJECT_BINARY_DIR}/repmodeConfig.cmake
                              INSTALL_DESTINATION ${REPMODE_INSTALL_CMAKEDIR})
# 0.x: a minor release may change the API, so only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/repmodeConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/repmodeConfig.cmake ${PROJECT_BINARY_DIR}/repmodeConfigVersion.cmake
        DESTINATION ${REPMODE_INSTALL_CMAKEDIR} COMPONENT repmode_Development)

# repmode.pc lives in ${libdir}/pkgconfig; its prefix is found from there (pcfiledir, known to pkgconf and pkg-config).
file(RELATIVE_PATH REPMODE_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" REPMODE_PC_TO_PREFIX ${REPMODE_PC_TO_PREFIX})
configure_file(cmake/repmode.pc.in ${PROJECT_BINARY_DIR}/repmode.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/repmode.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT repmode_Development)
