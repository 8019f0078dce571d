include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS vitrify EXPORT vitrifyTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/vitrify DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET vitrify_cli)
  install(TARGETS vitrify_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT vitrifyTargets NAMESPACE vitrify:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vitrify)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/vitrifyConfig.cmake.in
  ${PROJECT_BINARY_DIR}/vitrifyConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vitrify)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vitrifyConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vitrifyConfig.cmake ${PROJECT_BINARY_DIR}/vitrifyConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/vitrify_deps.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vitrify)
