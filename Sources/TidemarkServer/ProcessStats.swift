#if canImport(Glibc)
import Glibc
#endif

/// Facts about this process read from /proc, for `/metrics`.
struct ProcessStats {
    var residentBytes: Int
    var openFileDescriptors: Int
    var fileDescriptorLimit: Int

    /// Reads the current values; a fact /proc does not give is reported as -1.
    static func read() -> ProcessStats {
        ProcessStats(residentBytes: residentBytes(), openFileDescriptors: openFileDescriptors(),
                     fileDescriptorLimit: fileDescriptorLimit())
    }

    private static func residentBytes() -> Int {
        guard let file = fopen("/proc/self/statm", "r") else { return -1 }
        defer { fclose(file) }
        var sizePages = 0, residentPages = 0
        guard readTwoIntegers(file, &sizePages, &residentPages) else { return -1 }
        return residentPages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    private static func readTwoIntegers(_ file: UnsafeMutablePointer<FILE>, _ first: inout Int, _ second: inout Int) -> Bool {
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), file) != nil else { return false }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let a = Int(fields[0]), let b = Int(fields[1]) else { return false }
        first = a
        second = b
        return true
    }

    private static func openFileDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name != "." && name != ".." { count += 1 }
        }
        return count - 1  // the directory stream's own descriptor
    }

    private static func fileDescriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return -1 }
        return limit.rlim_cur == rlim_t.max ? -1 : Int(clamping: limit.rlim_cur)
    }
}
