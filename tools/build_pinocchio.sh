#!/usr/bin/env bash
# Build Pinocchio V5 (and PFFT, the parallel FFT it links against) the way the clustersbi
# Pinocchio backend expects it, install it into a prefix and print the config value to set.
#
#   tools/build_pinocchio.sh --pinocchio-src DIR --prefix PREFIX [--pfft-src DIR | --pfft-prefix DIR]
#                            [--fftw-prefix DIR] [--gsl-prefix DIR] [--plc] [--jobs N]
#                            [--install-debian-packages]
#
# (or `make pinocchio PINOCCHIO_SRC=DIR ...`, see the Makefile). DIR of --pinocchio-src is a
# clone of https://github.com/pigimonaco/Pinocchio (the folder holding src/Makefile); PFFT is
# built from a clone of https://github.com/mpip/pfft (--pfft-src) unless --pfft-prefix names
# an installed one or PREFIX already holds it.
#
# What the backend needs, and this script therefore sets:
# - Pinocchio's shipped src/Makefile switches on SCALE_DEPENDENT, READ_PK_TABLE,
#   RECOMPUTE_DISPLACEMENTS and READ_HUBBLE_TABLE (scale-dependent growth with massive
#   neutrinos from CAMB tables). The backend runs plain LCDM from one tabulated linear P(k)
#   (FileWithInputSpectrum), so these four are switched off; the script stops if it cannot
#   find them in the Makefile (a changed Makefile must be looked at, not half-edited).
# - The other options stay as shipped (TWO_LPT, THREE_LPT, ELL_CLASSIC): binary catalogues of
#   56-byte records, which clustersbi.pinocchio reads. OpenMP stays on as shipped (the backend
#   runs with OMP_NUM_THREADS unset or as set by the user; results do not depend on it).
# - --plc also builds PREFIX/bin/pinocchio-plc.x, the same with PLC light cones.
#
# Dependencies: an MPI C compiler (mpicc), FFTW3 with its MPI library, GSL, and for PFFT's
# bootstrap autoconf, automake and libtool. On Debian/Ubuntu, --install-debian-packages
# installs them with apt-get (root); with a module system, `module load` an MPI, FFTW and GSL
# first and give their prefixes with --fftw-prefix / --gsl-prefix if the compiler does not
# find them by itself. Idempotent: an executable already in PREFIX is not rebuilt. Exit status:
# 0 built (or already there), 3 a dependency is missing (nothing was built), 1 a build failed.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
die() { echo "build_pinocchio: $*" >&2; exit 1; }
# a build dependency (compiler, library, tool) is missing: exit status 3, so that callers can
# tell "cannot build here" from a failed build
missing() { echo "build_pinocchio: $*" >&2; exit 3; }

PINOCCHIO_SRC="" PREFIX="" PFFT_SRC="" PFFT_PREFIX="" FFTW_PREFIX="" GSL_PREFIX=""
PLC=0 APT=0 JOBS=${JOBS:-2}
while [ $# -gt 0 ]; do
  case "$1" in
    --pinocchio-src) PINOCCHIO_SRC=${2:?}; shift 2 ;;
    --prefix) PREFIX=${2:?}; shift 2 ;;
    --pfft-src) PFFT_SRC=${2:?}; shift 2 ;;
    --pfft-prefix) PFFT_PREFIX=${2:?}; shift 2 ;;
    --fftw-prefix) FFTW_PREFIX=${2:?}; shift 2 ;;
    --gsl-prefix) GSL_PREFIX=${2:?}; shift 2 ;;
    --plc) PLC=1; shift ;;
    --jobs) JOBS=${2:?}; shift 2 ;;
    --install-debian-packages) APT=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "build_pinocchio: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$PINOCCHIO_SRC" ] || die "--pinocchio-src DIR is required (a clone of https://github.com/pigimonaco/Pinocchio)"
[ -n "$PREFIX" ] || die "--prefix PREFIX is required (where bin/pinocchio.x is installed)"
[ -f "$PINOCCHIO_SRC/src/Makefile" ] || die "$PINOCCHIO_SRC/src/Makefile not found: --pinocchio-src must be a Pinocchio clone"
PINOCCHIO_SRC=$(cd "$PINOCCHIO_SRC" && pwd)
mkdir -p "$PREFIX/bin"
PREFIX=$(cd "$PREFIX" && pwd)

targets="$PREFIX/bin/pinocchio.x"
[ "$PLC" = 1 ] && targets="$targets $PREFIX/bin/pinocchio-plc.x"
built=1
for t in $targets; do [ -x "$t" ] || built=0; done

report() {
  echo "Pinocchio executable: $PREFIX/bin/pinocchio.x"
  [ "$PLC" = 1 ] && echo "with light cones:     $PREFIX/bin/pinocchio-plc.x"
  echo "Set in your config (simulation.backend: pinocchio):"
  echo "  pinocchio:"
  echo "    executable: $PREFIX/bin/pinocchio.x"
}
if [ "$built" = 1 ]; then
  echo "already built"; report; exit 0
fi

# ---- dependencies
if [ "$APT" = 1 ]; then
  pkgs="libopenmpi-dev openmpi-bin libfftw3-dev libfftw3-mpi-dev libgsl-dev autoconf automake libtool make gcc"
  absent=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$absent" ]; then
    command -v apt-get >/dev/null || missing "--install-debian-packages needs apt-get (Debian/Ubuntu); missing:" $absent
    echo "installing:" $absent
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $absent; } \
      >"${TMPDIR:-/tmp}/build_pinocchio_apt.$$.log" 2>&1 \
      || missing "apt-get install of $absent failed (root? network?); end of its log:
$(tail -5 "${TMPDIR:-/tmp}/build_pinocchio_apt.$$.log")"
    rm -f "${TMPDIR:-/tmp}/build_pinocchio_apt.$$.log"
  fi
fi
command -v make >/dev/null || missing "make not found"
command -v mpicc >/dev/null || missing "mpicc not found: install an MPI (Debian/Ubuntu: libopenmpi-dev openmpi-bin) or module load one"

inc="" lib=""
for p in "$FFTW_PREFIX" "$GSL_PREFIX"; do
  if [ -n "$p" ]; then
    inc="$inc -I$p/include"
    for d in "$p/lib" "$p/lib64"; do [ -d "$d" ] && lib="$lib -L$d -Wl,-rpath,$d"; done
  fi
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the libraries Pinocchio links, checked before anything is built (clear error, not a link failure)
cat > "$work/check.c" <<'EOF'
#include <fftw3-mpi.h>
#include <gsl/gsl_rng.h>
int main(void) { fftw_mpi_init(); gsl_rng_free(gsl_rng_alloc(gsl_rng_ranlxd1)); return 0; }
EOF
mpicc $inc "$work/check.c" -o "$work/check" $lib -lfftw3_mpi -lfftw3_omp -lfftw3 -lgsl -lgslcblas -lm >"$work/check.log" 2>&1 \
  || missing "cannot compile against FFTW3-MPI and GSL (Debian/Ubuntu: libfftw3-dev libfftw3-mpi-dev libgsl-dev; HPC: module load fftw gsl, then --fftw-prefix/--gsl-prefix):
$(tail -5 "$work/check.log")"

# ---- PFFT
if [ -z "$PFFT_PREFIX" ] && ls "$PREFIX"/lib/libpfft.* >/dev/null 2>&1; then
  PFFT_PREFIX=$PREFIX
fi
if [ -z "$PFFT_PREFIX" ]; then
  [ -n "$PFFT_SRC" ] || die "PFFT is needed: give --pfft-src DIR (a clone of https://github.com/mpip/pfft) or --pfft-prefix of an installed PFFT"
  [ -f "$PFFT_SRC/bootstrap.sh" ] || die "$PFFT_SRC/bootstrap.sh not found: --pfft-src must be a PFFT clone"
  for tool in autoreconf automake libtoolize; do
    command -v "$tool" >/dev/null || missing "$tool not found: PFFT's bootstrap needs autoconf, automake and libtool"
  done
  echo "building PFFT from $PFFT_SRC into $PREFIX"
  cp -r "$PFFT_SRC" "$work/pfft"
  fftw_opt=""
  [ -n "$FFTW_PREFIX" ] && fftw_opt="--with-fftw3=$FFTW_PREFIX"
  # bootstrap prints "PLEASE IGNORE WARNINGS AND ERRORS"; a failed configure or make is reported
  ( cd "$work/pfft" && ./bootstrap.sh >"$work/pfft-bootstrap.log" 2>&1 ) \
    || die "PFFT's bootstrap.sh failed; end of its log:
$(tail -20 "$work/pfft-bootstrap.log")"
  ( cd "$work/pfft" && ./configure -q --prefix="$PREFIX" --disable-fortran --disable-doc $fftw_opt CC=mpicc \
      >"$work/pfft-build.log" 2>&1 && make -s -j"$JOBS" >>"$work/pfft-build.log" 2>&1 \
      && make -s install >>"$work/pfft-build.log" 2>&1 ) \
    || die "PFFT build failed; end of its log:
$(tail -20 "$work/pfft-build.log")"
  PFFT_PREFIX=$PREFIX
fi
pfft_lib="$PFFT_PREFIX/lib"
[ -d "$PFFT_PREFIX/lib64" ] && ! ls "$pfft_lib"/libpfft.* >/dev/null 2>&1 && pfft_lib="$PFFT_PREFIX/lib64"

# ---- Pinocchio
builds="lcdm"
[ "$PLC" = 1 ] && builds="lcdm plc"
for b in $builds; do
  dir="$work/build-$b"
  cp -r "$PINOCCHIO_SRC/src" "$dir"
  for opt in SCALE_DEPENDENT READ_PK_TABLE RECOMPUTE_DISPLACEMENTS READ_HUBBLE_TABLE; do
    grep -Eq "^OPTIONS \+= -D$opt\s*$" "$dir/Makefile" \
      || die "option $opt is not switched on in $PINOCCHIO_SRC/src/Makefile as in V5.1: check that Makefile by hand"
    sed -i -E "s/^OPTIONS \+= -D$opt\s*$/# OPTIONS += -D$opt/" "$dir/Makefile"
  done
  if [ "$b" = plc ]; then
    grep -Eq '^# OPTIONS \+= -DPLC\s*$' "$dir/Makefile" || die "no '# OPTIONS += -DPLC' line in the Makefile"
    sed -i -E 's/^# OPTIONS \+= -DPLC\s*$/OPTIONS += -DPLC/' "$dir/Makefile"
  fi
  echo "building Pinocchio ($b) from $PINOCCHIO_SRC with:" $(grep -E '^OPTIONS \+=' "$dir/Makefile" | sed 's/OPTIONS += -D//')
  ( cd "$dir" && make -s -j"$JOBS" pinocchio SYSTYPE='"mylaptop"' \
      PFFT_LIBR="-L$pfft_lib -Wl,-rpath,$pfft_lib -lpfft" PFFT_INCL="-I$PFFT_PREFIX/include" \
      FFTW_LIBR="$lib -lfftw3_mpi -lfftw3 \$(OMP_FFTW)" FFTW_INCL="$inc" \
      GSL_LIBR="$lib -lgsl -lgslcblas -lm" GSL_INCL="" >"$work/pinocchio-$b.log" 2>&1 ) \
    || die "Pinocchio ($b) build failed; end of its log:
$(tail -20 "$work/pinocchio-$b.log")"
done
# install under a temporary name and rename: an interrupted build leaves no executable
cp "$work/build-lcdm/pinocchio.x" "$PREFIX/bin/.pinocchio.x.tmp" && mv "$PREFIX/bin/.pinocchio.x.tmp" "$PREFIX/bin/pinocchio.x"
if [ "$PLC" = 1 ]; then
  cp "$work/build-plc/pinocchio.x" "$PREFIX/bin/.pinocchio-plc.x.tmp" && mv "$PREFIX/bin/.pinocchio-plc.x.tmp" "$PREFIX/bin/pinocchio-plc.x"
fi
report
