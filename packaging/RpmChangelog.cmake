# Writes an rpm %changelog from the Debian changelog, so the project keeps one changelog.
#
# Debian:  regcache (0.1.0-1) unstable; urgency=medium
#            * A change that may
#              continue here.
#           -- Name <mail>  Thu, 03 Dec 2026 18:30:00 +0000
# rpm:     * Thu Dec 03 2026 Name <mail> - 0.1.0-1
#          - A change that may continue here.
function(regcache_rpm_changelog debian_changelog rpm_changelog)
  file(READ ${debian_changelog} text)
  # Lines become list items; a ';' inside a line must not split it.
  string(REPLACE ";" "<semicolon>" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")

  set(out "")
  set(version "")
  set(items "")
  set(item "")
  foreach(line IN LISTS lines)
    string(REPLACE "<semicolon>" ";" line "${line}")
    if(line MATCHES "^regcache \\(([^)]+)\\)")
      set(version ${CMAKE_MATCH_1})
      set(items "")
      set(item "")
    elseif(line MATCHES "^  \\* (.*)$")
      if(NOT item STREQUAL "")
        string(APPEND items "- ${item}\n")
      endif()
      set(item "${CMAKE_MATCH_1}")
    elseif(line MATCHES "^    +(.*)$")
      string(APPEND item " ${CMAKE_MATCH_1}")
    elseif(line MATCHES "^ -- (.+)  ([A-Z][a-z][a-z]), ([0-9]+) ([A-Z][a-z][a-z]) ([0-9]+) ")
      if(NOT item STREQUAL "")
        string(APPEND items "- ${item}\n")
      endif()
      # Taken out first: the next if(MATCHES) overwrites CMAKE_MATCH_*.
      set(who "${CMAKE_MATCH_1}")
      set(weekday ${CMAKE_MATCH_2})
      set(day ${CMAKE_MATCH_3})
      set(month ${CMAKE_MATCH_4})
      set(year ${CMAKE_MATCH_5})
      if(day MATCHES "^[0-9]$")
        set(day "0${day}")
      endif()
      string(APPEND out "* ${weekday} ${month} ${day} ${year} ${who} - ${version}\n${items}\n")
      set(item "")
      set(items "")
    endif()
  endforeach()
  if(out STREQUAL "")
    message(FATAL_ERROR "${debian_changelog}: no entries found")
  endif()
  file(WRITE ${rpm_changelog} "${out}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${debian_changelog})
endfunction()
