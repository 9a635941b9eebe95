# find_package(lmbff) support: defines the imported target lmbff::lmbff.
# The installed tree is relocatable: paths are derived from this file's location
# (<prefix>/lib/cmake/lmbff/).
get_filename_component(_lmbff_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET lmbff::lmbff)
  add_library(lmbff::lmbff SHARED IMPORTED)
  set_target_properties(lmbff::lmbff PROPERTIES
    IMPORTED_LOCATION "${_lmbff_prefix}/lib/liblmbff.so"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${_lmbff_prefix}/include")
endif()
set(lmbff_INCLUDE_DIRS "${_lmbff_prefix}/include")
set(lmbff_LIBRARIES lmbff::lmbff)
unset(_lmbff_prefix)
