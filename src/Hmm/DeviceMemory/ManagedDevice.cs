
namespace Hmm;

/// <summary>
/// A simulated device with device-managed resources (the kernel's <c>struct device</c> and its devres list).
/// Release actions attached to it run in reverse order of registration when it is unbound, as
/// <c>devm_*</c> resources do when a driver detaches.
/// </summary>
/// <remarks>Concurrency model: the action list is guarded by a private lock that is never held while an action
/// runs. Once unbinding starts, new actions are refused with <see cref="Errno.ENODEV"/>.</remarks>
public sealed class ManagedDevice
{
    private readonly Lock _lock = new();
    private readonly List<Entry> _actions = [];
    private readonly List<DevPagemap> _pagemaps = [];
    private Task? _unbind;

    /// <summary>Creates a bound device in the given machine.</summary>
    /// <param name="memory">The physical memory the device's resources live in.</param>
    /// <param name="name">The device name, for logs and diagnostics.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public ManagedDevice(PhysicalMemory memory, string name)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(name);
        Memory = memory;
        Name = name;
        TraceId = memory.NextTraceDevice();
    }

    /// <summary>The physical memory the device lives in.</summary>
    public PhysicalMemory Memory { get; }

    /// <summary>The device name.</summary>
    public string Name { get; }

    /// <summary>
    /// The device's number in trace events (<see cref="TraceEvent.Device"/>): devices are numbered 0, 1, 2, ... in the
    /// order they were created on their <see cref="PhysicalMemory"/>. The core's events for the device's pagemaps (the
    /// pagemaps of <see cref="Devm.Map"/>, or mapped into a region claimed with <see cref="Devm.RequestFreeRegion"/>)
    /// carry the same number, so a driver emitting its own events uses this one.
    /// </summary>
    public ushort TraceId { get; }

    /// <summary>False once unbinding has started.</summary>
    public bool IsBound
    {
        get
        {
            lock (_lock)
            {
                return _unbind is null;
            }
        }
    }

    /// <summary>
    /// Attaches a release action (<c>devm_add_action</c>). If it cannot be attached the action does not run and
    /// the call throws; see <see cref="AddActionOrReset(Func{Task})"/> for the form that runs it at once.
    /// </summary>
    /// <param name="release">What to do at unbind.</param>
    /// <exception cref="ArgumentNullException"><paramref name="release"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.ENODEV"/>: the device is unbinding; <see cref="Errno.ENOMEM"/>: an injected <see cref="FaultPoint.DevmAddAction"/> failure.</exception>
    public void AddAction(Func<Task> release) => Add(release, key: null);

    /// <summary>
    /// Attaches a release action, or, if that fails, runs it at once and throws (<c>devm_add_action_or_reset</c>):
    /// the resource never outlives a failed registration.
    /// </summary>
    /// <param name="release">What to do at unbind.</param>
    /// <exception cref="ArgumentNullException"><paramref name="release"/> is null.</exception>
    /// <exception cref="HmmException">As <see cref="AddAction"/>; the action has run by the time the exception is seen.</exception>
    public void AddActionOrReset(Func<Task> release) => AddOrReset(release, key: null);

    /// <summary>
    /// Unbinds the device: runs every release action in reverse order of registration, each to completion,
    /// including teardowns that wait for device pages to be freed.
    /// </summary>
    /// <remarks>
    /// A second unbind (this or <see cref="Unbind"/>) is accepted on purpose and joins the first: it starts
    /// nothing, runs no action twice, and completes when the first completes, with the same outcome. The
    /// kernel's <c>device_release_driver</c> on a device without a driver is likewise a no-op, not an error;
    /// joining rather than returning at once lets every caller observe the end of the teardown.
    /// </remarks>
    /// <param name="cancellationToken">Stops waiting; the unbind itself continues.</param>
    /// <returns>A task that completes once every action has run. It faults with the actions' exceptions, if any threw.</returns>
    public Task UnbindAsync(CancellationToken cancellationToken = default) => StartUnbind().WaitAsync(cancellationToken);

    /// <summary>Unbinds the device and waits at most <paramref name="timeout"/>; see <see cref="UnbindAsync"/>, also for a second unbind.</summary>
    /// <param name="timeout">
    /// How long to wait for outstanding device pages to be put. <see cref="Timeout.InfiniteTimeSpan"/>,
    /// <see cref="TimeSpan.MaxValue"/> and any timeout longer than <see cref="int.MaxValue"/> milliseconds (about
    /// 24.8 days) all mean no limit, as in the kernel's blocking <c>memunmap_pages</c>.
    /// </param>
    /// <exception cref="HmmException">
    /// <see cref="Errno.EINVAL"/>: <paramref name="timeout"/> is negative and not infinite. Checked before the unbind
    /// starts: the device is still bound and nothing ran.
    /// </exception>
    /// <exception cref="DeviceTeardownTimeoutException">
    /// Pages or lookups still hold a pagemap when the time runs out; it lists them. The unbind keeps going.
    /// </exception>
    public void Unbind(TimeSpan timeout)
    {
        int milliseconds = ToMilliseconds(timeout);
        Task unbind = StartUnbind();
        bool completed;
        try
        {
            completed = unbind.Wait(milliseconds);
        }
        catch (AggregateException error) when (error.InnerExceptions.Count == 1)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error.InnerExceptions[0]);
            throw;
        }

        if (!completed)
        {
            List<ReferencedPage> pages = [];
            List<PagemapLookups> lookups = [];
            foreach (DevPagemap pagemap in Pagemaps())
            {
                (IReadOnlyList<ReferencedPage> referenced, long outstanding) = pagemap.SampleOutstanding();
                pages.AddRange(referenced);
                if (outstanding > 0)
                {
                    lookups.Add(new PagemapLookups(pagemap.Id, pagemap.Name, outstanding));
                }
            }

            Log.DeviceUnbindTimedOut(Memory.Logger, Name, timeout, pages.Count);
            throw new DeviceTeardownTimeoutException(Name, timeout, pages, lookups);
        }
    }

    /// <summary>The pagemaps registered through <see cref="Devm.Map"/> on this device and not yet removed.</summary>
    /// <returns>A snapshot.</returns>
    public IReadOnlyList<DevPagemap> Pagemaps()
    {
        lock (_lock)
        {
            return _pagemaps.FindAll(p => p.State != DevPagemapState.Removed);
        }
    }

    internal void AddOrReset(Func<Task> release, object? key)
    {
        try
        {
            Add(release, key);
        }
        catch (HmmException)
        {
            Log.DevmActionRegistrationFailed(Memory.Logger, Name);
            release().GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>
    /// Refuses a device-managed registration on a device that is unbinding before anything is registered, so the
    /// common case changes nothing; a registration racing the unbind start is still undone by <see cref="AddOrReset"/>.
    /// </summary>
    internal void ThrowIfUnbinding()
    {
        if (!IsBound)
        {
            ThrowHelper.ThrowHmm(Errno.ENODEV, $"Device '{Name}' is unbinding; no resource can be attached.");
        }
    }

    internal void TrackPagemap(DevPagemap pagemap)
    {
        lock (_lock)
        {
            _pagemaps.Add(pagemap);
        }
    }

    /// <summary>
    /// Runs and detaches the action registered with <paramref name="key"/> now (<c>devm_release_action</c>). No
    /// such action is a kernel bug (the kernel WARNs), thrown before anything changes.
    /// </summary>
    internal Task ReleaseEarly(object key)
    {
        Entry? entry = null;
        bool unbinding;
        lock (_lock)
        {
            unbinding = _unbind is not null;
            int index = _actions.FindIndex(a => ReferenceEquals(a.Key, key));
            if (index >= 0)
            {
                entry = _actions[index];
                _actions.RemoveAt(index);
            }
        }

        if (entry is null)
        {
            ThrowHelper.ThrowBug(unbinding
                ? $"devm_release_action on device '{Name}' while it unbinds: its release actions already belong to the unbind."
                : $"devm_release_action on device '{Name}' for a resource it does not manage (never registered through it, or already released).");
        }

        return entry.Release();
    }

    /// <summary>The wait in milliseconds for a timeout: -1 (no limit) for infinite or beyond int.MaxValue ms.</summary>
    private static int ToMilliseconds(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan || timeout.TotalMilliseconds > int.MaxValue)
        {
            return Timeout.Infinite;
        }

        if (timeout < TimeSpan.Zero)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Unbind timeout {timeout} must not be negative (use Timeout.InfiniteTimeSpan for no limit).");
        }

        // Round up so that a positive sub-millisecond timeout still waits instead of only polling.
        return (int)Math.Ceiling(timeout.TotalMilliseconds);
    }

    private void Add(Func<Task> release, object? key)
    {
        ArgumentNullException.ThrowIfNull(release);
        lock (_lock)
        {
            if (_unbind is not null)
            {
                ThrowHelper.ThrowHmm(Errno.ENODEV, $"Device '{Name}' is unbinding; no resource can be attached.");
            }

            if (Memory.FaultInjection.ShouldFail(FaultPoint.DevmAddAction))
            {
                ThrowHelper.ThrowHmm(Errno.ENOMEM, $"Injected failure attaching a release action to device '{Name}'.");
            }

            _actions.Add(new Entry(release, key));
        }
    }

    private Task StartUnbind()
    {
        Entry[] actions;
        lock (_lock)
        {
            if (_unbind is not null)
            {
                return _unbind;
            }

            actions = [.. _actions];
            _actions.Clear();
            _unbind = RunReleaseActions(actions);
            return _unbind;
        }
    }

    private async Task RunReleaseActions(Entry[] actions)
    {
        await Task.Yield();
        Log.DeviceUnbinding(Memory.Logger, Name, actions.Length);
        List<Exception>? errors = null;
        for (int i = actions.Length - 1; i >= 0; i--)
        {
            try
            {
                await actions[i].Release().ConfigureAwait(false);
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                (errors ??= []).Add(error);
            }
        }

        Log.DeviceUnbound(Memory.Logger, Name);
        if (errors is not null)
        {
            throw new AggregateException($"Release actions of device '{Name}' failed.", errors);
        }
    }

    private sealed record Entry(Func<Task> Release, object? Key);
}
