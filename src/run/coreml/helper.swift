// modernbert-ane's Core ML helper: a long-running child process of the Node CLI that compiles, loads, runs and
// places Core ML packages. Newline-delimited JSON: one request per line on stdin, one reply per line on the
// private copy of stdout (fd 1 is pointed at stderr, so nothing else can write into the replies).
//   request  {"id": 7, "op": "hello|compile|load|predict|unload|plan", ...fields below}
//   reply    {"id": 7, "ok": true, ...} or {"id": 7, "ok": false, "error": "one line"}
// Arrays travel as {"dtype": "int32|float16|float32|float64", "shape": [..], "data": base64 of little-endian,
// row-major elements}. Built by src/run/coreml/build.ts: xcrun swiftc -O -parse-as-library -target <arch>-apple-macosx13.0.
// Every Core ML call names where its signature was read: Apple's documentation (developer.apple.com/documentation/
// coreml/...) and public Swift code that makes the same call, with file and line.

import CoreML
import Foundation

struct Failure: Error { let message: String }

/// An array on the wire.
struct WireArray: Decodable { let dtype: String; let shape: [Int]; let data: String }

/// Every field any request uses; each op reads its own.
struct Request: Decodable {
    let id: Int, op: String
    let package: String?, compiled: String?, function: String?, computeUnits: String?
    let model: Int?, inputs: [String: WireArray]?
}

/// Milliseconds since `t0`. DispatchTime.now().uptimeNanoseconds: swift-transformers Tests/Benchmarks/BenchmarkSupport.swift:53-56.
func millis(since t0: UInt64) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - t0) / 1_000_000
}

func need<T>(_ value: T?, _ name: String) throws -> T {
    guard let value else { throw Failure(message: "the request has no \"\(name)\"") }
    return value
}

/// Compute units by the CLI's protocol names; the four cases: smpanaro/CoreMLInspect Sources/CLI.swift:147-167.
func computeUnits(_ name: String?) throws -> MLComputeUnits {
    switch name ?? "all" {
    case "all": return .all
    case "cpuOnly": return .cpuOnly
    case "cpuAndGPU": return .cpuAndGPU
    case "cpuAndNeuralEngine": return .cpuAndNeuralEngine
    default: throw Failure(message: "unknown compute units \"\(name ?? "")\"")
    }
}

/// A configuration for a package's function. MLModelConfiguration().computeUnits: swift-transformers
/// Sources/Models/LanguageModel.swift:167-168; functionName (macOS 15+): developer.apple.com/documentation/coreml/
/// mlmodelconfiguration/functionname, set as in Anemll anemll-swift-cli/Sources/AnemllCore/ModelLoader.swift:311.
func configuration(_ r: Request) throws -> MLModelConfiguration {
    let config = MLModelConfiguration()
    config.computeUnits = try computeUnits(r.computeUnits)
    if let function = r.function {
        guard #available(macOS 15.0, *) else {
            throw Failure(message: "function \"\(function)\" of a multifunction package needs macOS 15 or later")
        }
        config.functionName = function
    }
    return config
}

/// (Core ML type, bytes per element) of a wire dtype. MLMultiArrayDataType.float16 is macOS 12+:
/// WhisperKit Sources/ArgmaxCore/FloatType.swift:25.
func arrayType(_ dtype: String) throws -> (MLMultiArrayDataType, Int) {
    switch dtype {
    case "int32": return (.int32, 4)
    case "float16": return (.float16, 2)
    case "float32": return (.float32, 4)
    case "float64": return (.double, 8)
    default: throw Failure(message: "unknown array dtype \"\(dtype)\"")
    }
}

/// The wire dtype and element size of a Core ML array type (MLMultiArray.dataType).
func wireType(_ type: MLMultiArrayDataType) throws -> (String, Int) {
    switch type {
    case .int32: return ("int32", 4)
    case .float16: return ("float16", 2)
    case .float32: return ("float32", 4)
    case .double: return ("float64", 8)
    @unknown default: throw Failure(message: "an output has an array type this helper does not read (\(type.rawValue))")
    }
}

/// Copies between a packed row-major buffer and a strided one (strides in elements), a row of the last axis at a time.
func copyStrided(shape: [Int], strides: [Int], size: Int, packed: UnsafeMutableRawPointer, strided: UnsafeMutableRawPointer, toStrided: Bool) {
    let rank = shape.count
    guard rank > 0, !shape.contains(0) else { return }
    let last = shape[rank - 1]
    let lastStride = strides[rank - 1]
    let rows = shape.dropLast().reduce(1, *)
    var index = [Int](repeating: 0, count: rank - 1)
    for row in 0..<rows {
        var base = 0
        for d in 0..<(rank - 1) { base += index[d] * strides[d] }
        let p = packed + row * last * size
        let s = strided + base * size
        if lastStride == 1 {
            if toStrided { s.copyMemory(from: p, byteCount: last * size) } else { p.copyMemory(from: s, byteCount: last * size) }
        } else {
            for j in 0..<last {
                if toStrided { (s + j * lastStride * size).copyMemory(from: p + j * size, byteCount: size) } else { (p + j * size).copyMemory(from: s + j * lastStride * size, byteCount: size) }
            }
        }
        var d = rank - 2 // the next row's index, as an odometer turns
        while d >= 0 { index[d] += 1; if index[d] < shape[d] { break }; index[d] = 0; d -= 1 }
    }
}

/// A wire array as an MLMultiArray. MLMultiArray(shape:dataType:) (contiguous storage): developer.apple.com/
/// documentation/coreml/mlmultiarray/init(shape:datatype:), as in WhisperKit Sources/ArgmaxCore/MLMultiArrayExtensions.swift:61;
/// withUnsafeMutableBytes (buffer and its strides, macOS 12.3+): developer.apple.com/documentation/coreml/mlmultiarray/withunsafemutablebytes(_:).
func multiArray(_ name: String, _ w: WireArray) throws -> MLMultiArray {
    let (type, size) = try arrayType(w.dtype)
    guard var bytes = Data(base64Encoded: w.data) else { throw Failure(message: "input \"\(name)\": data is not base64") }
    let count = w.shape.reduce(1, *)
    guard !w.shape.isEmpty, w.shape.allSatisfy({ $0 >= 0 }), bytes.count == count * size else {
        throw Failure(message: "input \"\(name)\": \(bytes.count) bytes do not hold shape \(w.shape) of \(w.dtype)")
    }
    let array = try MLMultiArray(shape: w.shape.map { NSNumber(value: $0) }, dataType: type)
    array.withUnsafeMutableBytes { dst, strides in
        bytes.withUnsafeMutableBytes { src in
            guard let packed = src.baseAddress, let strided = dst.baseAddress else { return }
            copyStrided(shape: w.shape, strides: strides, size: size, packed: packed, strided: strided, toStrided: true)
        }
    }
    return array
}

/// An output MLMultiArray on the wire, packed (outputs on the Neural Engine may be padded: their strides say how).
/// shape, dataType: developer.apple.com/documentation/coreml/mlmultiarray/shape and .../datatype.
func wire(_ array: MLMultiArray) throws -> [String: Any] {
    let (dtype, size) = try wireType(array.dataType)
    let shape = array.shape.map { $0.intValue }
    var out = Data(count: shape.reduce(1, *) * size)
    array.withUnsafeMutableBytes { src, strides in
        out.withUnsafeMutableBytes { dst in
            guard let packed = dst.baseAddress, let strided = src.baseAddress else { return }
            copyStrided(shape: shape, strides: strides, size: size, packed: packed, strided: strided, toStrided: false)
        }
    }
    return ["dtype": dtype, "shape": shape, "data": out.base64EncodedString()]
}

/// The device's name in the protocol. MLComputeDevice's cases: smpanaro/CoreMLInspect Sources/CLI.swift:118-130.
@available(macOS 14.4, *)
func deviceName(_ device: MLComputeDevice) -> String {
    switch device {
    case .cpu(_): return "cpu"
    case .gpu(_): return "gpu"
    case .neuralEngine(_): return "ane"
    @unknown default: return "unknown"
    }
}

final class Helper {
    var models: [Int: MLModel] = [:]
    var nextModel = 1

    func handle(_ r: Request) async throws -> [String: Any] {
        switch r.op {
        case "hello": return hello()
        case "compile": return try await compile(r)
        case "load": return try load(r)
        case "predict": return try predict(r)
        case "unload":
            let handle = try need(r.model, "model")
            models[handle] = nil
            return [:]
        case "plan": return try await plan(r)
        default: throw Failure(message: "unknown op \"\(r.op)\"")
        }
    }

    /// The protocol version and the OS. ProcessInfo.operatingSystemVersion / operatingSystemVersionString:
    /// developer.apple.com/documentation/foundation/processinfo/operatingsystemversion (and ...versionstring).
    func hello() -> [String: Any] {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return ["protocol": 1, "os": ProcessInfo.processInfo.operatingSystemVersionString, "os_version": [v.majorVersion, v.minorVersion, v.patchVersion]]
    }

    /// Compiles the package into `compiled` (a cache path the CLI chose from the package's content) unless it is there.
    /// try await MLModel.compileModel(at:) (macOS 13+, compiles to a temporary folder): developer.apple.com/documentation/
    /// coreml/mlmodel/compilemodel(at:)-3nea, as in huggingface/swift-chat SwiftChat/ModelLoader.swift:34;
    /// FileManager.moveItem(at:to:): WhisperKit Sources/ArgmaxCore/External/Hub/Downloader.swift:410.
    func compile(_ r: Request) async throws -> [String: Any] {
        let dest = URL(fileURLWithPath: try need(r.compiled, "compiled"))
        let fm = FileManager.default
        if fm.fileExists(atPath: dest.path) { return ["compiled_now": false] }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let tmp = try await MLModel.compileModel(at: URL(fileURLWithPath: try need(r.package, "package")))
        let ms = millis(since: t0)
        try fm.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
        do {
            try fm.moveItem(at: tmp, to: dest)
        } catch {
            // Another process may have filled the same cache entry meanwhile: its copy is as good as ours.
            guard fm.fileExists(atPath: dest.path) else { throw error }
            try? fm.removeItem(at: tmp)
        }
        return ["compiled_now": true, "compile_ms": ms]
    }

    /// Loads a compiled model. MLModel(contentsOf:configuration:): developer.apple.com/documentation/coreml/mlmodel/
    /// init(contentsof:configuration:), as in swift-transformers Sources/Models/LanguageModel.swift:169.
    func load(_ r: Request) throws -> [String: Any] {
        let config = try configuration(r)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let model = try MLModel(contentsOf: URL(fileURLWithPath: try need(r.compiled, "compiled")), configuration: config)
        let ms = millis(since: t0)
        let handle = nextModel
        nextModel += 1
        models[handle] = model
        return ["model": handle, "load_ms": ms]
    }

    /// One prediction. MLFeatureValue(multiArray:) in MLDictionaryFeatureProvider(dictionary:): WhisperKit
    /// Sources/WhisperKit/Core/Models.swift:898; prediction(from:), featureNames, featureValue(for:)?.multiArrayValue:
    /// apple/ml-stable-diffusion swift/StableDiffusion/pipeline/Encoder.swift:59-65.
    func predict(_ r: Request) throws -> [String: Any] {
        let handle = try need(r.model, "model")
        guard let model = models[handle] else { throw Failure(message: "no model \(handle) is loaded") }
        let inputs = try need(r.inputs, "inputs")
        var features: [String: MLFeatureValue] = [:]
        for (name, w) in inputs { features[name] = MLFeatureValue(multiArray: try multiArray(name, w)) }
        let provider = try MLDictionaryFeatureProvider(dictionary: features)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let result = try model.prediction(from: provider)
        let ms = millis(since: t0)
        var outputs: [String: Any] = [:]
        for name in result.featureNames {
            guard let array = result.featureValue(for: name)?.multiArrayValue else { throw Failure(message: "output \"\(name)\" is not a multi-array") }
            outputs[name] = try wire(array)
        }
        return ["outputs": outputs, "predict_ms": ms]
    }

    /// Where Core ML would run each op of a function (macOS 14.4+). MLComputePlan.load(contentsOf:configuration:) on a
    /// compiled model, modelStructure's .program, functions[..].block.operations, deviceUsage(for:) (.preferred,
    /// .supported), estimatedCost(of:)?.weight, operatorName, outputs' names: developer.apple.com/documentation/coreml/
    /// mlcomputeplan-1w21n and smpanaro/CoreMLInspect Sources/CLI.swift:32-39, 55-60, 70-79, 95, 111.
    func plan(_ r: Request) async throws -> [String: Any] {
        guard #available(macOS 14.4, *) else {
            throw Failure(message: "MLComputePlan needs macOS 14.4 or later; this is \(ProcessInfo.processInfo.operatingSystemVersionString)")
        }
        let config = MLModelConfiguration()
        config.computeUnits = try computeUnits(r.computeUnits)
        let plan = try await MLComputePlan.load(contentsOf: URL(fileURLWithPath: try need(r.compiled, "compiled")), configuration: config)
        guard case .program(let program) = plan.modelStructure else { throw Failure(message: "the model is not an ML Program") }
        let name = r.function ?? "main"
        guard let function = program.functions[name] else {
            throw Failure(message: "the program has no function \"\(name)\" (it has \(program.functions.keys.sorted().joined(separator: ", ")))")
        }
        var ops: [[String: Any]] = []
        for (index, op) in function.block.operations.enumerated() {
            var row: [String: Any] = ["index": index, "type": op.operatorName, "outputs": op.outputs.map { $0.name }]
            if let usage = plan.deviceUsage(for: op) {
                row["preferred"] = deviceName(usage.preferred)
                row["supported"] = usage.supported.map(deviceName)
            }
            // JSONSerialization raises (not throws) on a non-finite number.
            if let cost = plan.estimatedCost(of: op), cost.weight.isFinite { row["cost"] = cost.weight }
            ops.append(row)
        }
        return ["function": name, "ops": ops]
    }
}

@main
struct CoreMLHelper {
    /// Reads requests until stdin closes. FileHandle(fileDescriptor:closeOnDealloc:), write(contentsOf:):
    /// developer.apple.com/documentation/foundation/filehandle; JSONSerialization.data(withJSONObject:): Anemll
    /// anemll-chatbot/anemll-chatbot/Services/ModelService+ModelsJSON.swift:54; JSONDecoder with .convertFromSnakeCase:
    /// swift-transformers Sources/Models/Weights.swift:101-103.
    static func main() async {
        // Replies go to a private copy of stdout; anything a framework prints to fd 1 lands on stderr instead.
        let replies = FileHandle(fileDescriptor: dup(1), closeOnDealloc: true)
        dup2(2, 1)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let helper = Helper()
        while let line = readLine(strippingNewline: true) {
            if line.isEmpty { continue }
            var reply: [String: Any]
            var id: Any = NSNull()
            do {
                let request = try decoder.decode(Request.self, from: Data(line.utf8))
                id = request.id
                reply = try await helper.handle(request)
                reply["ok"] = true
            } catch let failure as Failure {
                reply = ["ok": false, "error": failure.message]
            } catch {
                reply = ["ok": false, "error": String(describing: error)]
            }
            reply["id"] = id
            do {
                var data = try JSONSerialization.data(withJSONObject: reply)
                data.append(0x0A)
                try replies.write(contentsOf: data)
            } catch {
                exit(1) // the CLI is gone, or a reply could not be encoded: either way nobody can be answered
            }
        }
    }
}
