# Build and install liblmbff with its header, a pkg-config file and a CMake package.
#
#   make                          full library (training, export, prediction)
#   make serve                    serve-only library (prediction; no libtorch)
#   make install PREFIX=/opt/lmbff        install the full library (built by `make`)
#   make install-serve PREFIX=/opt/lmbff  install the serve-only library (built by `make serve`)
#   make uninstall PREFIX=/opt/lmbff
#
# The install targets build nothing: `make && sudo make install` runs cargo as the
# user only (root's PATH has no rustup cargo, and root-owned files in target/ would
# break the user's next build).
#
# Installed layout: $(PREFIX)/include/lmbff.h and lmbff.hpp (the C++17 wrapper),
# $(PREFIX)/lib/liblmbff.so.<C ABI version> (its SONAME) and liblmbff.so linking to it,
# $(PREFIX)/lib/libonnxruntime.so.<its version> (copied from the venv, found by the library
# "next to liblmbff.so"), $(PREFIX)/lib/pkgconfig/lmbff.pc and
# $(PREFIX)/lib/cmake/lmbff/. The full library finds libtorch through its rpath (the
# project venv's torch/lib) or the loader path (LD_LIBRARY_PATH); see docs/install.md.

SHELL := bash
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# written once, in python/requirements.txt
ORT_VERSION := $(shell sed -n 's/^onnxruntime==//p' python/requirements.txt)
# the C ABI version, the library's SONAME suffix (written once, in src/ffi/mod.rs)
ABI := $(shell sed -n 's/^pub const LMBFF_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/mod.rs)
ENV := source scripts/env.sh &&

.PHONY: all serve install install-serve uninstall
all:
	$(ENV) cargo build --release --lib
serve:
	$(ENV) cargo build --release --lib --no-default-features --target-dir target/serve

install:
	$(MAKE) --no-print-directory install-files BUILT=target/release BUILD=make
install-serve:
	$(MAKE) --no-print-directory install-files BUILT=target/serve/release BUILD="make serve"

# Shared by both variants: BUILT is the cargo output folder of the library to install.
.PHONY: install-files
install-files:
	@test -f $(BUILT)/liblmbff.so || { echo "no $(BUILT)/liblmbff.so: build it first ($(BUILD), as your user)" >&2; exit 1; }
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/lmbff $(DESTDIR)$(INCLUDEDIR)
	install -m 644 include/lmbff.h include/lmbff.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(BUILT)/liblmbff.so $(DESTDIR)$(LIBDIR)/liblmbff.so.$(ABI)
	ln -sfn liblmbff.so.$(ABI) $(DESTDIR)$(LIBDIR)/liblmbff.so
	$(ENV) install -m 755 "$$LMBFF_ORT_LIB" $(DESTDIR)$(LIBDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' \
	  packaging/lmbff.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/lmbff.pc
	sed -e "s|@INCLUDEDIR_FROM_HERE@|$$(realpath -s -m --relative-to=$(LIBDIR)/cmake/lmbff $(INCLUDEDIR))|; s|@ABI@|$(ABI)|g" \
	  packaging/lmbff-config.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/lmbff/lmbff-config.cmake
	sed -e 's|@VERSION@|$(VERSION)|' packaging/lmbff-config-version.cmake.in \
	  > $(DESTDIR)$(LIBDIR)/cmake/lmbff/lmbff-config-version.cmake
	@echo "installed lmbff $(VERSION) from $(BUILT) into $(DESTDIR)$(PREFIX)"

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/lmbff.h $(DESTDIR)$(INCLUDEDIR)/lmbff.hpp $(DESTDIR)$(LIBDIR)/liblmbff.so \
	  $(DESTDIR)$(LIBDIR)/liblmbff.so.$(ABI) \
	  $(DESTDIR)$(LIBDIR)/libonnxruntime.so.$(ORT_VERSION) $(DESTDIR)$(LIBDIR)/pkgconfig/lmbff.pc
	rm -rf $(DESTDIR)$(LIBDIR)/cmake/lmbff
