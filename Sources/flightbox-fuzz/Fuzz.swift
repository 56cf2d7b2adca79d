// The reader's fuzz target.
//
// Built by scripts/fuzz.sh with -sanitize=fuzzer,address -D FUZZING, it is a
// libFuzzer binary: coverage-guided, seeded with format/ and fixtures/. Built
// normally, it replays the inputs named on its command line (crash files that
// libFuzzer saved) through the same code.
import FlightboxFormat
#if canImport(Glibc)
import Glibc
#endif

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = TraceReader.exercise(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_silgen_name("LLVMFuzzerMutate")
func LLVMFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>?, _ size: Int, _ maxSize: Int) -> Int

/// libFuzzer's byte mutations rarely get past a CRC-32C; half the time this
/// mutates whole blocks and index entries and makes every checksum valid
/// again (TraceMutator), the other half it lets libFuzzer mutate and then
/// repairs the checksums most of the time.
@_cdecl("LLVMFuzzerCustomMutator")
public func customMutator(_ data: UnsafeMutablePointer<UInt8>?, _ size: Int, _ maxSize: Int, _ seed: CUnsignedInt) -> Int {
    guard let data else { return 0 }
    var rng = SeededRandom(state: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1)
    var bytes: [UInt8]
    if rng.next() & 1 == 0 {
        bytes = TraceMutator.mutate(Array(UnsafeBufferPointer(start: data, count: size)), using: &rng)
    } else {
        let n = LLVMFuzzerMutate(data, size, maxSize)
        bytes = Array(UnsafeBufferPointer(start: data, count: n))
        if rng.next() & 3 != 0 { TraceMutator.fixChecksums(&bytes) }
    }
    let n = min(bytes.count, maxSize)
    bytes.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: n) }
    return n
}

struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

/// SwiftPM links an executable through this symbol, and libFuzzer brings a
/// `main` of its own (scripts/fuzz.sh lets both exist): either way control
/// reaches libFuzzer's driver with `fuzzOne`.
@_cdecl("flightbox_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
}
#else
@main
struct ReplayInputs {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let f = fopen(path, "rb") else { print("cannot open \(path)"); continue }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while case let n = fread(&chunk, 1, chunk.count, f), n > 0 { bytes += chunk[0..<n] }
            fclose(f)
            let digest = bytes.withUnsafeBytes { TraceReader.exercise($0) }
            print("\(path): read without fault (digest \(digest))")
        }
    }
}
#endif
