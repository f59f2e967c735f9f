# What `cpack` puts into regcache's .deb and .rpm, and how they are named and versioned.
# Included by the top-level CMakeLists.txt after the regcache target's install rule. The
# upstream version is VERSION's (via PROJECT_VERSION); the package revision and the changelog
# come from packaging/changelog, whose top entry must be "<VERSION>-<revision>".

set(REGCACHE_PACKAGING_DIR ${CMAKE_CURRENT_LIST_DIR})
set(REGCACHE_PACKAGING_OUT ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${REGCACHE_PACKAGING_OUT})

# ---- The package revision, from the changelog's top entry -------------------------------------

file(STRINGS ${REGCACHE_PACKAGING_DIR}/changelog REGCACHE_CHANGELOG_TOP LIMIT_COUNT 1)
if(NOT REGCACHE_CHANGELOG_TOP MATCHES "^regcache \\(([^)-]+)-([^)]+)\\) ")
  message(FATAL_ERROR "packaging/changelog: the first line is not \"regcache (VERSION-REV) ...\"")
endif()
set(REGCACHE_PACKAGE_REVISION ${CMAKE_MATCH_2})
if(NOT CMAKE_MATCH_1 STREQUAL PROJECT_VERSION)
  # A warning, not an error, so a VERSION bump never breaks a developer's build; the
  # packaging test fails on it.
  message(WARNING "packaging/changelog's top entry is ${CMAKE_MATCH_1}, VERSION is "
                  "${PROJECT_VERSION}: add a changelog entry for the new version")
endif()

# ---- Generated files: gzip'd without timestamps (lintian), the rpm changelog ------------------

configure_file(${REGCACHE_PACKAGING_DIR}/regcache.8 ${REGCACHE_PACKAGING_OUT}/regcache.8 @ONLY)
configure_file(${REGCACHE_PACKAGING_DIR}/changelog ${REGCACHE_PACKAGING_OUT}/changelog.Debian
               COPYONLY)
foreach(doc regcache.8 changelog.Debian)
  add_custom_command(OUTPUT ${REGCACHE_PACKAGING_OUT}/${doc}.gz
                     COMMAND gzip -9nkf ${doc}
                     DEPENDS ${REGCACHE_PACKAGING_OUT}/${doc}
                     WORKING_DIRECTORY ${REGCACHE_PACKAGING_OUT} VERBATIM)
endforeach()
add_custom_target(regcache_package_docs ALL
                  DEPENDS ${REGCACHE_PACKAGING_OUT}/regcache.8.gz
                          ${REGCACHE_PACKAGING_OUT}/changelog.Debian.gz)

include(${REGCACHE_PACKAGING_DIR}/RpmChangelog.cmake)
regcache_rpm_changelog(${REGCACHE_PACKAGING_DIR}/changelog ${REGCACHE_PACKAGING_OUT}/rpm-changelog)

# ---- Installed files (prefix /usr in the packages) -------------------------------------------

install(FILES ${PROJECT_SOURCE_DIR}/etc/regcache.toml DESTINATION /etc/regcache)
install(FILES ${PROJECT_SOURCE_DIR}/etc/regcache.service DESTINATION lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/etc/regcache.sysusers DESTINATION lib/sysusers.d
        RENAME regcache.conf)
install(FILES ${REGCACHE_PACKAGING_OUT}/regcache.8.gz DESTINATION share/man/man8)
install(FILES ${REGCACHE_PACKAGING_DIR}/regcache.bash-completion
        DESTINATION share/bash-completion/completions RENAME regcache)
install(FILES ${REGCACHE_PACKAGING_DIR}/copyright ${REGCACHE_PACKAGING_OUT}/changelog.Debian.gz
        DESTINATION share/doc/regcache)

# ---- Both packages ---------------------------------------------------------------------------

set(CPACK_GENERATOR DEB RPM)
set(CPACK_PACKAGE_NAME regcache)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "The regcache authors")
set(CPACK_PACKAGE_CONTACT
    "regcache maintainers <maintainers@users.noreply.r-seed-43744268.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "pull-through caching proxy and private registry for OCI images")
set(CPACK_PACKAGE_DESCRIPTION
    "regcache mirrors container registries (Docker Hub, ghcr.io, quay.io,
registry.k8s.io) for a LAN: every image layer crosses the WAN once, is verified
against its digest and is then served from local disk. It also accepts pushes
into local namespaces, so one server is a mirror and a private registry.
It speaks the OCI Distribution API, as used by Docker, containerd, podman,
skopeo and Kubernetes nodes.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_OUTPUT_FILE_PREFIX ${CMAKE_BINARY_DIR}/packages)

# ---- .deb: regcache_<version>-<revision>_<arch>.deb ------------------------------------------

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${REGCACHE_PACKAGE_REVISION})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The shared-library dependencies come from dpkg-shlibdeps on the binary, so they always
# match what it links; adduser is the account fallback where systemd-sysusers is missing.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${REGCACHE_PACKAGING_DIR}/deb/conffiles ${REGCACHE_PACKAGING_DIR}/deb/postinst
    ${REGCACHE_PACKAGING_DIR}/deb/prerm ${REGCACHE_PACKAGING_DIR}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# ---- .rpm: regcache-<version>-<release>.<arch>.rpm -------------------------------------------

set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE ${REGCACHE_PACKAGE_REVISION})
# Installed where the unit, the config and the man page expect it, never elsewhere.
set(CPACK_PACKAGE_RELOCATABLE OFF)
set(CPACK_RPM_PACKAGE_LICENSE "LicenseRef-regcache-unlicensed")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
# rpm's dependency finder would name Debian's sonames, which mean nothing to dnf; these are
# the Fedora/RHEL packages holding the libraries regcache links. A binary for Fedora must be
# built there (same CMake, same cpack) so that their sonames match too.
set(CPACK_RPM_PACKAGE_AUTOREQ OFF)
string(JOIN ", " CPACK_RPM_PACKAGE_REQUIRES glibc libgcc libstdc++ libevent libcurl openssl-libs
       lmdb-libs simdjson spdlog fmt http-parser tomlplusplus)
set(CPACK_RPM_PACKAGE_REQUIRES_POST "systemd")
set(CPACK_RPM_PACKAGE_REQUIRES_PREUN "systemd")
set(CPACK_RPM_PACKAGE_REQUIRES_POSTUN "systemd")
set(CPACK_RPM_POST_INSTALL_SCRIPT_FILE ${REGCACHE_PACKAGING_DIR}/rpm/post.sh)
set(CPACK_RPM_PRE_UNINSTALL_SCRIPT_FILE ${REGCACHE_PACKAGING_DIR}/rpm/preun.sh)
set(CPACK_RPM_POST_UNINSTALL_SCRIPT_FILE ${REGCACHE_PACKAGING_DIR}/rpm/postun.sh)
set(CPACK_RPM_USER_FILELIST "%config(noreplace) /etc/regcache/regcache.toml")
set(CPACK_RPM_CHANGELOG_FILE ${REGCACHE_PACKAGING_OUT}/rpm-changelog)
# Directories the distribution's own packages own.
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /usr/lib/systemd /usr/lib/systemd/system /usr/lib/sysusers.d /usr/share/bash-completion
    /usr/share/bash-completion/completions /usr/share/man /usr/share/man/man8 /usr/share/doc)
set(CPACK_RPM_SPEC_MORE_DEFINE "%define _build_id_links none")

include(CPack)
