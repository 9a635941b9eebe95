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
ENV := source scripts/env.sh &&

.PHONY: all serve install install-serve uninstall
all:
	$(ENV) cargo build --release --locked --lib
serve:
	$(ENV) cargo build --release --locked --lib --no-default-features --target-dir target/serve

install:
	$(MAKE) --no-print-directory install-files BUILT=target/release BUILD=make
install-serve:
	$(MAKE) --no-print-directory install-files BUILT=target/serve/release BUILD="make serve"

# Shared by both variants: BUILT is the cargo output folder of the library to install.
.PHONY: install-files
install-files: SONAME = $(shell readelf -d $(BUILT)/liblmbff.so 2>/dev/null | sed -n 's/.*(SONAME).*\[\(liblmbff\.so\.[0-9]*\)\]/\1/p')
install-files:
	@test -f $(BUILT)/liblmbff.so || { echo "no $(BUILT)/liblmbff.so: build it first ($(BUILD), as your user)" >&2; exit 1; }
	@# The file goes under the SONAME it was built with (liblmbff.so.<C ABI version>),
	@# the name hosts linked against it ask for, whatever the sources say now.
	@test -n "$(SONAME)" || { echo "$(BUILT)/liblmbff.so has no SONAME (built before it had one): build it again ($(BUILD))" >&2; exit 1; }
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/lmbff $(DESTDIR)$(INCLUDEDIR)
	install -m 644 include/lmbff.h include/lmbff.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(BUILT)/liblmbff.so $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/liblmbff.so
	$(ENV) install -m 755 "$$LMBFF_ORT_LIB" $(DESTDIR)$(LIBDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' \
	  packaging/lmbff.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/lmbff.pc
	sed -e "s|@INCLUDEDIR_FROM_HERE@|$$(realpath -s -m --relative-to=$(LIBDIR)/cmake/lmbff $(INCLUDEDIR))|; s|@SONAME@|$(SONAME)|g" \
	  packaging/lmbff-config.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/lmbff/lmbff-config.cmake
	sed -e 's|@VERSION@|$(VERSION)|' packaging/lmbff-config-version.cmake.in \
	  > $(DESTDIR)$(LIBDIR)/cmake/lmbff/lmbff-config-version.cmake
	@echo "installed lmbff $(VERSION) from $(BUILT) into $(DESTDIR)$(PREFIX)"

uninstall:
	@# the file liblmbff.so links to (the SONAME it was installed under), then the link
	link=$$(readlink $(DESTDIR)$(LIBDIR)/liblmbff.so || true); \
	  case "$$link" in liblmbff.so.*) rm -f "$(DESTDIR)$(LIBDIR)/$$link";; esac
	rm -f $(DESTDIR)$(INCLUDEDIR)/lmbff.h $(DESTDIR)$(INCLUDEDIR)/lmbff.hpp $(DESTDIR)$(LIBDIR)/liblmbff.so \
	  $(DESTDIR)$(LIBDIR)/libonnxruntime.so.$(ORT_VERSION) $(DESTDIR)$(LIBDIR)/pkgconfig/lmbff.pc
	rm -rf $(DESTDIR)$(LIBDIR)/cmake/lmbff
