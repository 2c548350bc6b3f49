# The ClientHello reader (SNI routing without terminating TLS). Its own library for now, so
# that it needs nothing of OpenSSL; included from the top CMakeLists after src/net.
add_library(sluice_tls_hello ${CMAKE_CURRENT_LIST_DIR}/client_hello.cc)
target_link_libraries(sluice_tls_hello PUBLIC sluice_base)
