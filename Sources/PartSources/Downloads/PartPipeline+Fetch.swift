#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import Synchronization

/// The download of one part: its walk over the locations, the transfer into a partial cache
/// file (or memory, when the cache cannot be written), the check and the commit.
extension PartPipeline {
    // MARK: the download of one part

    func begin(index: Int, attempt: UInt64, prefetch: Bool) {
        let part = template.parts[index]
        let walk = DownloadWalk(urls: ordered(weightedURLs(forPart: index), part: part),
                                attemptsPerLocation: downloadConfig.attemptsPerLocation, retryDelay: downloadConfig.retryDelay)
        var job = Job(index: index, key: key(index), checksum: part.checksum, length: part.length, attempt: attempt,
                      prefetch: prefetch, walk: walk)
        if walk.urls.isEmpty {
            finish(job, error: unavailable(part, "has no local copy and no download location in the .jigdo"))
            return
        }
        let step = job.walk.start()
        perform(job, step)
    }

    /// Carries out a step of the job's walk: the one place its actions become I/O. Runs with
    /// no lock held.
    func perform(_ job: Job, _ step: DownloadWalk.Step, cause: TransferError? = nil) {
        let part = template.parts[job.index]
        if let url = step.blame {
            noteFailure(url, location: location(of: url, job), demote: step.demote)
            // A transfer that failed, once per location and error in a mount's log (LogSetup
            // folds repeats; wrong bytes have their own line, with the part).
            if let cause { logger.warning("download failed: \(url): \(cause)") }
        }
        if let url = step.credit { noteSuccess(location: location(of: url, job)) }
        switch step.action {
        case .fetch(_, let fromZero):
            if fromZero { discardPartial(job) }
            tryLocation(job)
        case .retry(let url, let after):
            logger.info("\(url): retrying in \(after) s")
            clock.runAfter(after) { self.tryLocation(job) }
        case .memory(let url):
            if let cache { Syscalls.unlink(cache.partialPath(for: job.checksum)) }
            downloadIntoMemory(job, requestURL: applyRedirect(url), cause: cause)
        case .succeeded:
            break
        case .giveUp(let errors):
            let detail = errors.isEmpty ? "" : ": " + errors.joined(separator: "; ")
            finish(job, error: unavailable(part, "could not be downloaded from any location\(detail)"))
        }
    }

    func tryLocation(_ job: Job) {
        var job = job
        guard let url = job.walk.currentURL, let cache, let downloader else {
            let part = template.parts[job.index]
            let detail = job.walk.errors.isEmpty ? "" : ": " + job.walk.errors.joined(separator: "; ")
            finish(job, error: unavailable(part, "could not be downloaded from any location\(detail)"))
            return
        }
        if job.lockFD < 0 {
            if !cache.isWritable {
                // Already there (put there before the cache turned unwritable): done.
                if cache.contains(job.checksum, length: job.length) {
                    finish(job, error: nil, fetched: false)
                    return
                }
                downloadIntoMemory(job, requestURL: applyRedirect(url), cause: nil)
                return
            }
            do {
                let sum = job.checksum, key = job.key
                guard let fd = try cache.lockPartial(for: sum, onDemand: { [weak self] in self?.promoteIfPrefetch(key) }) else {
                    let retry = job
                    // Another image of this mount is downloading it (a part two images of a
                    // release share): go on when it is done, then it is in the cache.
                    if cache.whenReleasedHere(sum, demand: !currentlyPrefetch(job), { self.tryLocation(retry) }) { return }
                    // Another process sharing the cache is downloading it: look again shortly.
                    clock.runAfter(max(downloadConfig.retryDelay, 0.2)) { self.tryLocation(retry) }
                    return
                }
                job.lockFD = fd
            } catch let e as JigdoError where PartCache.costsOnlyCaching(e.firstErrno) {
                // A read-only, full or foreign cache: caching is lost, the read is not.
                let code = e.firstErrno!.rawValue
                if code != ENOSPC && code != EDQUOT { cache.noteUnwritable(e.description) }
                downloadIntoMemory(job, requestURL: applyRedirect(url),
                                   cause: TransferError(reason: .diskFull(e.description)))
                return
            } catch let e as JigdoError {
                finish(job, error: e)
                return
            } catch {
                finish(job, error: JigdoError(.io, "\(error)", underlying: error))
                return
            }
        }
        if cache.contains(job.checksum, length: job.length) {
            // Another process sharing the cache finished it meanwhile.
            Syscalls.unlink(cache.partialPath(for: job.checksum))
            finish(job, error: nil, fetched: false)
            return
        }
        let partial = cache.partialPath(for: job.checksum)
        // The size of the locked file (an fstat: no path walk).
        var resume = lockedPartialSize(job.lockFD) ?? 0
        if resume > job.length {
            discardPartial(job)
            resume = 0
        }
        if resume == job.length && job.length > 0 {
            verify(job, partial: partial, resumedFrom: resume, received: nil)
            return
        }
        // Downloads are hashed as they arrive; a resumed file's prefix is hashed once here.
        var hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
        if resume > 0 {
            do {
                let prefix = try ReadOnlyFile(path: partial, extraFlags: O_NOFOLLOW)
                try prefix.hash(count: resume, into: &hasher)
            } catch {
                discardPartial(job)
                resume = 0
                hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
            }
        }
        let requestURL = applyRedirect(url)
        let store = self
        job.prefetch = currentlyPrefetch(job)
        let resumeFrom = resume
        var request = TransferRequest(url: requestURL, path: partial)
        request.descriptor = job.lockFD
        request.resumeFrom = resumeFrom
        request.maxLength = job.length
        request.exactLength = true
        request.freshConnect = job.walk.freshConnect
        request.hasher = hasher
        request.location = transferStarts(&job, requestURL: requestURL, bytes: job.length - resumeFrom)
        let submitted = job
        let id = downloader.submit(request, priority: job.prefetch ? .prefetch : .demand) { result in
            store.transferDone(submitted, requestURL: requestURL, partial: partial, resumedFrom: resumeFrom, result: result)
        }
        let promoted = event { $0.submitted(job.key, attempt: job.attempt, transfer: id, asPrefetch: job.prefetch) }
        // A reader started waiting while this was being submitted.
        if promoted { downloader.promote(id) }
    }

    /// A reader of another image waits for this part, which this image fetches ahead: its
    /// transfer moves before the other read-ahead ones.
    func promoteIfPrefetch(_ key: Int32) {
        let promote = event { $0.promoteIfPrefetch(key) }
        if let promote { downloader?.promote(promote) }
    }

    /// Whether nobody waits for the part yet (its download may queue behind demand reads).
    func currentlyPrefetch(_ job: Job) -> Bool {
        event { $0.isPrefetch(job.key, attempt: job.attempt) }
    }

    func transferDone(_ job: Job, requestURL: String, partial: String, resumedFrom: Int64, result: Result<TransferSummary, TransferError>) {
        var job = job
        let url = job.url
        noteTransferEnded(location: location(of: url, job), bytes: job.length - resumedFrom,
                          received: (try? result.get().received) ?? 0)
        switch result {
        case .success(let summary):
            recordDownloaded(summary.received)
            if summary.effectiveURL != requestURL { learnRedirect(from: requestURL, to: summary.effectiveURL) }
            verify(job, partial: partial, resumedFrom: resumedFrom, received: summary.checksum)
        case .failure(let error):
            if requestURL != url {
                // The remembered redirect target failed: forget it; the walk decides what next
                // (the original server asked again, once).
                forgetRedirect(for: url)
                let step = job.walk.handle(.redirectTargetFailed(error))
                perform(job, step, cause: error)
                return
            }
            switch error.reason {
            case .tooLong, .protocolViolation:
                discardPartial(job)
                logger.warning("\(url): \(error); not used")
            default:
                break
            }
            // A mirror that stalls is demoted at once: the others carry the rest.
            if error.isStall { logger.warning("\(url): \(error); this mirror goes last for a while") }
            let step = job.walk.handle(.failed(error))
            if case .retry = step.action { logger.info("\(url): \(error)") }
            perform(job, step, cause: error)
        }
    }

    /// The cache disk is full: fetch the part into memory, check it there and serve it from
    /// memory (caching is lost, correctness is not).
    func downloadIntoMemory(_ job: Job, requestURL: String, cause: TransferError?) {
        guard job.length <= Int64(options.memoryBudget), let downloader else {
            var job = job
            let step = job.walk.skip("\(cause.map { "\($0)" } ?? "the cache cannot be written") (the part is too large to keep in memory)")
            perform(job, step)
            return
        }
        if let cause {
            // One warning per store: a full disk would otherwise log a line per part.
            condition.lock()
            let first = !state.warnedMemory
            state.warnedMemory = true
            condition.unlock()
            if first {
                logger.warning("\(cause): cache disk full; parts are kept in memory instead (caching is lost, not correctness)")
            } else {
                logger.debug("\(cause): part \(job.checksum.base64) kept in memory")
            }
        }
        let store = self
        var request = TransferRequest(url: requestURL, path: nil)
        request.maxLength = job.length
        request.exactLength = true
        request.freshConnect = job.walk.freshConnect
        request.hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
        var job = job
        request.location = transferStarts(&job, requestURL: requestURL, bytes: job.length)
        let submitted = job
        downloader.submit(request, priority: .demand) { result in
            store.memoryDone(submitted, result: result)
        }
    }

    func memoryDone(_ job: Job, result: Result<TransferSummary, TransferError>) {
        var job = job
        let url = job.url
        noteTransferEnded(location: location(of: url, job), bytes: job.length, received: (try? result.get().received) ?? 0)
        switch result {
        case .success(let summary):
            let body = summary.body ?? []
            recordDownloaded(summary.received)
            let sum = summary.checksum ?? {
                var hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
                hasher.update(body)
                return hasher.finalize()
            }()
            let matches = sum == job.checksum && Int64(body.count) == job.length
            if !matches {
                logger.warning("\(url): served wrong bytes for part \(job.checksum.base64) (checksum \(sum.base64)); discarded")
            }
            let step = job.walk.handle(.transferred(matches: matches, resumed: false))
            perform(job, step)
            if matches { finish(job, .inMemory(body)) }
        case .failure(let error):
            let step = job.walk.handle(.failed(error))
            perform(job, step, cause: error)
        }
    }

    /// Checks the downloaded file; a match goes into the cache, a mismatch is thrown away.
    /// `received`: the checksum of the file as its bytes arrived (nil: read it back).
    func verify(_ job: Job, partial: String, resumedFrom: Int64, received: Checksum?) {
        var job = job
        let url = job.url
        let kind = job.checksum.kind ?? template.checksumKind
        let sum: Checksum
        if let received {
            sum = received
        } else {
            do {
                sum = try ReadOnlyFile(path: partial, extraFlags: O_NOFOLLOW).checksum(kind)
            } catch {
                let step = job.walk.skip("\(error)")
                perform(job, step)
                return
            }
        }
        let step = job.walk.handle(.transferred(matches: sum == job.checksum, resumed: resumedFrom > 0))
        guard sum == job.checksum else {
            discardPartial(job)
            if step.blame != nil {
                logger.warning("\(url): served wrong bytes for part \(job.checksum.base64) (checksum \(sum.base64)); discarded")
            }
            perform(job, step)
            return
        }
        perform(job, step)
        do {
            // Made room for (--cache-size) before it is renamed in. A part no reader pins that
            // does not fit beside the pinned ones is not kept: done all the same (caching is
            // lost; a later read finds it missing and fetches it again).
            if let cache, try cache.store(partial: partial, as: job.checksum, length: job.length) {
                // The locked descriptor (every download into the cache holds one, taken in
                // `tryLocation`) is the cached part's now: kept open for reading, its lock
                // released. Bytes this process hashed as they arrived: served without another
                // check while the file stays as it is.
                let f = cache.unlockStored(job.lockFD, for: job.checksum, length: job.length)
                job.lockFD = -1
                finish(job, f.map { .opened($0, $0.identity) } ?? .landed)
            } else {
                finish(job, .landed)
            }
        } catch {
            // E.g. no room for a new cache directory: serve the verified bytes from memory.
            // If the partial file cannot be read back either, its error is dropped: the
            // commit's error (`error`) is the one the job fails with, below.
            if job.length <= Int64(options.memoryBudget), let bytes = try? ReadOnlyFile(path: partial).readAll(),
               Int64(bytes.count) == job.length {
                let why = (error as? JigdoError).map { $0.errno?.text ?? $0.message } ?? "\(error)"
                logger.warning("the part cache cannot store parts (\(why)); they are kept in memory instead")
                logger.debug("\(error); part \(job.checksum.base64) is kept in memory")
                Syscalls.unlink(partial)
                finish(job, .inMemory(bytes))
            } else {
                finish(job, error: (error as? JigdoError) ?? JigdoError(.io, "\(error)", underlying: error))
            }
        }
    }

    /// `fetched`: the part was downloaded by this attempt (not found in the cache).
    func finish(_ job: Job, error: JigdoError?, fetched: Bool = true) {
        finish(job, error.map { .failed($0) } ?? .landed, fetched: fetched)
    }

    /// The attempt ended: its entry changes, its waiters are called (after the lock).
    func finish(_ job: Job, _ outcome: Table.Outcome, fetched: Bool = true) {
        if job.lockFD >= 0 {
            // An empty partial file (made to hold the lock) is not worth keeping. Only a failed
            // attempt can leave one: a part that is there was renamed in (the locked file is
            // the cached part now), kept in memory or found in the cache (its partial file
            // removed).
            if case .failed = outcome, let cache, lockedPartialSize(job.lockFD) == 0 {
                Syscalls.unlink(cache.partialPath(for: job.checksum))
            }
            if let cache { cache.unlockPartial(job.lockFD, for: job.checksum) } else { Syscalls.close(job.lockFD) }
        }
        var error: JigdoError?
        if case .failed(let e) = outcome { error = e }
        condition.lock()
        let end = state.table.finished(job.key, attempt: job.attempt, outcome)
        if error == nil && fetched { state.partsDownloaded += 1 }
        condition.broadcast()
        condition.unlock()
        for w in end.waiters { w(error) }
        // A failed read-ahead is retried when the part is read. A failing read throws the error
        // to its reader, which reports it (the CLI's one line, the mount's EIO log line).
        if let error { logger.info("\(end.readerWaited ? "" : "read-ahead: ")\(error)") }
    }

    /// A transfer of `bytes` of the job's current URL (asked as `requestURL`, a remembered
    /// redirect or the URL itself) starts: its mirror location is worked out once and kept in
    /// the job (`Job.located`) and its load noted. Returns the location the fetcher counts the
    /// request against.
    func transferStarts(_ job: inout Job, requestURL: String, bytes: Int64) -> String {
        let url = job.url
        let location = location(of: url, job)
        job.located = (url, location)
        noteTransferStarted(location: location, bytes: bytes)
        return requestURL == url ? location : locationPrefix(requestURL, part: template.parts[job.index])
    }

    /// Throws away what the partial file holds. While its lock is held it is emptied in place:
    /// unlinked, the next transfer would make a new file at its path that this lock does not
    /// cover, and another process could lock and write that one at the same time. (Removed
    /// when it cannot be emptied, or is not locked.)
    func discardPartial(_ job: Job) {
        if job.lockFD >= 0, lockedPartialSize(job.lockFD) != nil, Syscalls.ftruncate(job.lockFD, 0) == 0 { return }
        if let cache { Syscalls.unlink(cache.partialPath(for: job.checksum)) }
    }

    /// The size of the partial file whose lock `fd` holds; nil when it has no name any more
    /// (unlinked) or cannot be looked at.
    func lockedPartialSize(_ fd: Int32) -> Int64? {
        var st = stat()
        guard Syscalls.fstat(fd, &st) == 0, st.st_nlink > 0 else { return nil }
        return Int64(st.st_size)
    }

    func recordDownloaded(_ bytes: Int64) {
        condition.lock()
        state.bytesDownloaded += bytes
        condition.unlock()
    }
}
